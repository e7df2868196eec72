"""The routing queue: a waiting conversation's place (`queue_score`, `refresh_queue_scores`,
`queue_position`), joining it (`enqueue`, a decision's "queued" outcome; `requeue`, a conversation left
without an agent), leaving it (`leave_queue`, `leave_queue_assigned`, `leave_queue_merged`) and the recheck of
a reopened conversation (`do_recheck_reopened`: kept by its agent, or routed again). Serving the queue is
routing.actions.drain."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from agents.models import AgentProfile, Team
from conversations import actions as conv_actions
from conversations.models import ContactSegment, Conversation

from .. import tasks
from ..models import QueueEntry, RoutingConfig, RoutingDecision
from ..queries import agent_load_sql, leave_queue_assigned_sql
from .shared import Outcome, agent_ids, is_chat, record_decision, refused_agents

QUEUE_SCORE_MAX = 32767  # QueueEntry.priority is a smallint; a segment's level may be up to that


def queue_score(vip_level: int | None, priority: int) -> int:
    """A waiting conversation's place in the queue order: VIP level first, then priority (higher first)."""
    return max(0, min(QUEUE_SCORE_MAX, (vip_level or 0) * 10 + priority))


def refresh_queue_scores(*, conversation_id: int | None = None, contact_id: int | None = None) -> int:
    """Re-place waiting conversations in the queue after their priority or their contact's segments changed
    (the queue orders by VIP level, then priority); how many moved."""
    entries = QueueEntry.objects.select_related("conversation")
    if conversation_id is not None:
        entries = entries.filter(conversation_id=conversation_id)
    if contact_id is not None:
        entries = entries.filter(conversation__contact_id=contact_id)
    moved = 0
    for entry in entries:
        vip_level = max(ContactSegment.objects.filter(contact_id=entry.conversation.contact_id)
                        .values_list("segment__priority_level", flat=True), default=0)
        score = queue_score(vip_level, entry.conversation.priority)
        if score != entry.priority:
            QueueEntry.objects.filter(pk=entry.pk).update(priority=score)
            moved += 1
    return moved


def enqueue(conversation: Conversation, entry: QueueEntry | None, *, details: dict, summary: str,
            vip_level: int | None = None) -> Outcome:
    """A decision's "queued" outcome: the conversation (whose row the decision holds locked) waits in the queue
    at its score (`vip_level`: None, read from its contact's segments), `entry` its queue entry if it has one;
    the decision is stored unless the last one stored was "queued" too."""
    if vip_level is None:
        vip_level = max((s.priority_level for s in conversation.contact.segments.all()), default=0)
    score = queue_score(vip_level, conversation.priority)
    if entry is None:
        QueueEntry.objects.create(conversation=conversation, inbox_id=conversation.inbox_id, priority=score,
                                  enqueued_at=conversation.waiting_since or timezone.now())
        record_decision(conversation, "queued", summary=summary, details=details)
        return Outcome("queued", summary=summary, refused=refused_agents(details))
    if entry.priority != score:
        entry.priority = score
        entry.save(update_fields=["priority"])
    # Back in the queue after something else (a missed offer): stored too. A drain that finds it still waiting
    # stores nothing (one row per attempt, every few seconds, would bury the decisions that matter).
    last = RoutingDecision.objects.filter(conversation=conversation).order_by("-id").values_list("outcome",
                                                                                                   flat=True).first()
    if last != RoutingDecision.Outcome.QUEUED:
        record_decision(conversation, "queued", summary=summary, details=details)
    return Outcome("queued", summary=summary, refused=refused_agents(details))


@transaction.atomic
def requeue(conversation: Conversation, *, released_user_id: int | None, for_team: Team | None = None) -> None:
    """An open conversation left without an agent (unassigned, transferred to a team its agent or the agent it
    was offered to is not in, reopened without one) is routed again after commit: a pending offer is withdrawn;
    `released_user_id`, the agent who let it go, is skipped until they next come online (as after a missed
    offer); `for_team`, the team it was transferred to, is the only one it waits for (None: as it was).
    The caller holds the conversation's row lock (the conversations.hooks.conversation_released point)."""
    entry = QueueEntry.objects.select_for_update().filter(conversation=conversation).first()
    excluded = set(agent_ids(entry.excluded_agents)) if entry else set()
    if released_user_id is not None:
        excluded |= set(AgentProfile.objects.filter(user_id=released_user_id).values_list("id", flat=True))
    withdrawn = entry is not None and entry.state == QueueEntry.State.OFFERED
    defaults = {"inbox_id": conversation.inbox_id, "state": QueueEntry.State.WAITING, "offered_to": None,
                "offer_expires_at": None, "priority": entry.priority if entry else conversation.priority,
                "enqueued_at": entry.enqueued_at if entry else (conversation.waiting_since or timezone.now()),
                "excluded_agents": sorted(excluded)}
    if for_team is not None:
        defaults["for_team"] = for_team
    QueueEntry.objects.update_or_create(conversation=conversation, defaults=defaults)
    refresh_queue_scores(conversation_id=conversation.pk)  # its place: VIP level, then priority
    if withdrawn:
        conv_actions.offer_withdrawn(conversation, entry.offered_to.user_id if entry.offered_to else None)
    tasks.route_conversation.delay_on_commit(conversation.id)


def leave_queue(conversation: Conversation) -> None:
    """A conversation that left "open" leaves the routing queue too (a visitor who gave up no longer holds a
    place in it, an offer for it no longer holds the agent's slot); the queue moves on after commit when that
    freed an agent's room."""
    offered = QueueEntry.objects.filter(conversation=conversation).delete()[0] and conversation.assignee_id is None
    if conversation.assignee_id or offered:
        tasks.drain_queue.delay_on_commit()


def leave_queue_assigned(conversation: Conversation, assignee) -> None:
    """A conversation given to `assignee` outside routing's decision (by hand, an accepted offer) leaves the
    queue; an offer of it to another agent is withdrawn, which frees that agent's slot. One statement: the
    entry's removal returns what it was (the caller holds the conversation's row lock)."""
    with connection.cursor() as cursor:
        cursor.execute(*leave_queue_assigned_sql(conversation.pk))
        row = cursor.fetchone()
    if row is not None:
        state, offered_user_id = row
        if state == QueueEntry.State.OFFERED and offered_user_id is not None and offered_user_id != assignee.pk:
            conv_actions.offer_withdrawn(conversation, offered_user_id)


def leave_queue_merged(source: Conversation) -> None:
    """A conversation merged into another leaves the queue; an offer of it no longer holds the agent's slot, and
    the queue moves on after commit (an agent it was assigned to: the core's capacity_freed does that)."""
    left = QueueEntry.objects.filter(conversation=source).delete()[0]
    if left and not (source.status == Conversation.Status.OPEN and source.assignee_id):
        tasks.drain_queue.delay_on_commit()


def do_recheck_reopened(*, conversation_id: int, solved_at: datetime | None = None) -> str:
    """A solved conversation the customer reopened went back to its agent: it stays with them when they are
    available (online, within their limit with it, and the conversation was solved within the reopen window);
    otherwise it is unassigned, which routes it again. "kept", "rerouted" or "skipped"."""
    conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "assignee")
                    .filter(pk=conversation_id).first())
    if conversation is None or conversation.status != Conversation.Status.OPEN or not conversation.assignee_id \
            or conversation.merged_into_id:
        return "skipped"
    window = timedelta(hours=RoutingConfig.get().reopen_window_hours)
    agent = AgentProfile.objects.filter(user_id=conversation.assignee_id).first()
    chat = is_chat(conversation)
    reason = None
    if solved_at is not None and timezone.now() - solved_at > window:
        reason = "it was solved before the reopen window"
    elif agent is None or not conversation.assignee.is_active:
        reason = "no longer an agent"
    elif agent.status != AgentProfile.Status.ONLINE:
        reason = f"{agent.name} is {agent.get_status_display().lower()}"
    else:
        with connection.cursor() as cursor:
            cursor.execute(*agent_load_sql(agent.pk, chat))
            load = cursor.fetchone()[0]  # this conversation included
        limit = agent.max_concurrent if chat else agent.max_concurrent_async
        if load > limit:
            reason = f"{agent.name} is at capacity ({load - 1}/{limit})"
    if reason is None:
        return "kept"
    # Unassigned without counting as letting it go: the agent may still get it back once they have room.
    conv_actions.assign_locked(actor=None, conversation=conversation, assignee=None,
                                note=f"Reopened by the customer; {reason}: routed again", reroute=False)
    requeue(conversation, released_user_id=None)
    return "rerouted"


def in_queue_order(entries: QuerySet, now: datetime | None = None) -> QuerySet:
    """Queue entries in the order the queue serves them: VIP level and priority (QueueEntry.priority, higher
    first), then SLA urgency (breached, then past its warning, then the rest), then arrival (enqueued_at, id).
    SLA due times break no ties among the rest: conversations of the same priority started their clocks a
    few milliseconds apart in any order, so arrival decides."""
    now = now or timezone.now()
    urgency = Case(When(conversation__sla_due_at__lte=now, then=Value(0)),
                   When(conversation__sla_warn_at__lte=now, then=Value(1)),
                   default=Value(2), output_field=IntegerField())
    return entries.annotate(sla_urgency=urgency).order_by("-priority", "sla_urgency", "enqueued_at", "id")


def queue_position(conversation: Conversation) -> tuple[int | None, int | None]:
    """(1-based place in the inbox's queue, estimated wait in seconds), or (None, None) when not waiting."""
    entry = QueueEntry.objects.filter(conversation=conversation, state=QueueEntry.State.WAITING).first()
    if entry is None:
        return None, None
    ordered = list(in_queue_order(QueueEntry.objects.filter(inbox=entry.inbox_id, state=QueueEntry.State.WAITING))
                   .values_list("id", flat=True))
    ahead = ordered.index(entry.id) if entry.id in ordered else len(ordered)
    # Who can serve it: the team it was transferred to, else the inbox's teams; not the agents it excludes.
    servers = AgentProfile.objects.filter(status=AgentProfile.Status.ONLINE).exclude(
        pk__in=agent_ids(entry.excluded_agents))
    servers = (servers.filter(teams=entry.for_team_id) if entry.for_team_id
               else servers.filter(teams__inboxes=entry.inbox_id))
    online = servers.distinct().count()
    if not online:  # nobody to serve the queue now: no estimate (the visitor is told the place only)
        return ahead + 1, None
    config = RoutingConfig.get()
    return ahead + 1, int((ahead + 1) * config.average_handle_seconds / online)
