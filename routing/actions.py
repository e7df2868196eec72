"""Agent state changes (presence, roles) and routing: rules, distribution, capacity, queue, offers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from conversations.models import Conversation
from omnichannel.realtime import PRESENCE_GROUP, inbox_stream, publish, publish_ephemeral

from .engine import Facts, evaluate, gather_facts, sticky_window_open
from .models import (
    AgentProfile,
    AgentSkill,
    QueueEntry,
    RoutingConfig,
    RoutingDecision,
    RoutingRule,
    Skill,
    Team,
)

ROLE_GROUPS = {AgentProfile.Role.SUPERVISOR: "Supervisors", AgentProfile.Role.ADMIN: "Admins"}
CONFIG_APPS = ("conversations", "routing", "sla", "campaigns", "chatbot", "reporting", "authtoken")


def _role_permissions(role: str):
    if role == AgentProfile.Role.ADMIN:
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS) | Q(content_type__app_label="auth", codename__in=[
                "add_user", "change_user", "view_user", "view_group"])
        )
    if role == AgentProfile.Role.SUPERVISOR:
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS, codename__startswith="view_")
            | Q(content_type__app_label="conversations", codename__in=[
                "change_conversation", "change_contact", "add_cannedmessage", "change_cannedmessage",
                "delete_cannedmessage", "change_segment", "add_tag", "change_tag"])
            | Q(content_type__app_label="routing", codename__in=["change_agentprofile"])
            | Q(content_type__app_label="auth", codename="view_user")
        )
    return Permission.objects.none()


def role_group(role: str) -> Group | None:
    name = ROLE_GROUPS.get(role)
    if name is None:
        return None
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.set(_role_permissions(role))
    return group


@transaction.atomic
def do_set_agent_role(*, agent: AgentProfile, role: str) -> AgentProfile:
    """Set the role and the matching Django admin access (staff flag and permission group)."""
    if role not in AgentProfile.Role.values:
        raise ValueError(f"Unknown role {role!r}")
    user = agent.user
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    group = role_group(role)
    if group is not None:
        user.groups.add(group)
    if not user.is_superuser:
        user.is_staff = role != AgentProfile.Role.AGENT
        user.save(update_fields=["is_staff"])
    if agent.role != role:
        agent.role = role
        agent.save(update_fields=["role"])
    return agent


@transaction.atomic
def do_set_agent_status(*, agent: AgentProfile, status: str, reason: str = "") -> AgentProfile:
    if status not in AgentProfile.Status.values:
        raise ValueError(f"Unknown status {status!r}")
    agent = AgentProfile.objects.select_for_update().get(pk=agent.pk)
    now = timezone.now()
    fields = ["status", "status_changed_at"]
    if status != AgentProfile.Status.OFFLINE:
        agent.last_seen_at = now
        fields.append("last_seen_at")
    if agent.status == status:
        if len(fields) > 2:
            agent.save(update_fields=["last_seen_at"])
        return agent
    agent.status = status
    agent.status_changed_at = now
    agent.save(update_fields=fields)
    if status == AgentProfile.Status.ONLINE:
        from .tasks import drain_queue

        drain_queue.delay_on_commit()
    publish_ephemeral({"type": "presence", "agent_id": agent.user_id, "status": status, "reason": reason},
                      groups=[PRESENCE_GROUP])
    return agent


def do_touch_presence(*, agent: AgentProfile) -> None:
    """Heartbeat from an open console: keeps an online/away agent from timing out."""
    AgentProfile.objects.filter(pk=agent.pk).update(last_seen_at=timezone.now())


def do_sweep_presence() -> int:
    """Set agents whose console stopped sending heartbeats offline. Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    stale = AgentProfile.objects.filter(status__in=[AgentProfile.Status.ONLINE, AgentProfile.Status.AWAY]).filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True))
    count = 0
    for agent in stale:
        do_set_agent_status(agent=agent, status=AgentProfile.Status.OFFLINE, reason="heartbeat timeout")
        count += 1
    return count


# --- routing ------------------------------------------------------------------------------

CHAT_KINDS = ("webchat",)


@dataclass
class Candidate:
    agent: AgentProfile
    load: int = 0
    limit: int = 0
    skill_level: int = 0
    skipped: str = ""


@dataclass
class Outcome:
    outcome: str
    agent: AgentProfile | None = None
    summary: str = ""


def _is_chat(conversation: Conversation) -> bool:
    return conversation.inbox.kind in CHAT_KINDS


def _loads(agent_ids: list[int], chat: bool) -> dict[int, int]:
    """Open conversations (and pending offers) per agent on the channel class (live chat vs asynchronous)."""
    kind_filter = Q(inbox__kind__in=CHAT_KINDS) if chat else ~Q(inbox__kind__in=CHAT_KINDS)
    loads = dict(Conversation.objects.filter(kind_filter, assignee__agent__in=agent_ids,
                                             status=Conversation.Status.OPEN)
                 .values_list("assignee__agent").annotate(n=Count("id")))
    offers = QueueEntry.objects.filter(state=QueueEntry.State.OFFERED, offered_to__in=agent_ids)
    offers = offers.filter(inbox__kind__in=CHAT_KINDS) if chat else offers.exclude(inbox__kind__in=CHAT_KINDS)
    for agent_id, n in offers.values_list("offered_to").annotate(n=Count("id")):
        loads[agent_id] = loads.get(agent_id, 0) + n
    return loads


def _target_agents(kind: str, *, agent, team, skill, min_level: int, facts: Facts) -> tuple[list, str, str]:
    """(agents, description, distribution method) for one rule target."""
    if kind == RoutingRule.Target.AGENT:
        return ([agent] if agent else []), f"agent {agent.name if agent else '(deleted)'}", "least_busy"
    if kind == RoutingRule.Target.TEAM:
        if team is None:
            return [], "team (deleted)", "least_busy"
        return list(team.members.all()), f"team {team.name}", team.distribution_method
    if kind == RoutingRule.Target.SKILL:
        if skill is None:
            return [], "skill (deleted)", "most_capable"
        agents = list(AgentProfile.objects.filter(agentskill__skill=skill, agentskill__level__gte=min_level))
        return agents, f"skill {skill.name} ≥ {min_level}", "most_capable"
    if kind == RoutingRule.Target.LAST_AGENT:
        return ([facts.last_agent] if facts.last_agent else []), "the last agent", "sticky"
    if kind == RoutingRule.Target.ACCOUNT_MANAGER:
        return ([facts.account_manager] if facts.account_manager else []), "the account manager", "least_busy"
    return [], f"unknown target {kind!r}", "least_busy"


def _choose(agents: list[AgentProfile], *, conversation: Conversation, method: str, skill: Skill | None,
            facts: Facts, excluded: set[int], sticky_minutes: int = 1440) -> tuple[Candidate | None, list[dict]]:
    """Lock the candidates, drop the ineligible (with the reason), pick one by `method`."""
    ids = sorted({a.pk for a in agents if a is not None})
    if not ids:
        return None, []
    locked = list(AgentProfile.objects.select_for_update(of=("self",)).select_related("user")
                  .filter(pk__in=ids).order_by("pk"))
    chat = _is_chat(conversation)
    loads = _loads(ids, chat)
    can_see = set(AgentProfile.objects.filter(pk__in=ids).filter(
        Q(teams__inboxes=conversation.inbox_id) | Q(role__in=[AgentProfile.Role.SUPERVISOR, AgentProfile.Role.ADMIN]))
        .values_list("pk", flat=True))
    levels = {}
    if skill is not None:
        levels = dict(AgentSkill.objects.filter(agent__in=ids, skill=skill).values_list("agent", "level"))
    report, eligible = [], []
    for agent in locked:
        c = Candidate(agent=agent, load=loads.get(agent.pk, 0),
                      limit=agent.max_concurrent if chat else agent.max_concurrent_async,
                      skill_level=levels.get(agent.pk, 0))
        if not agent.user.is_active:
            c.skipped = "deactivated"
        elif agent.pk in excluded:
            c.skipped = "missed this offer"
        elif agent.status != AgentProfile.Status.ONLINE:
            c.skipped = agent.status
        elif agent.pk not in can_see:
            c.skipped = "cannot see this inbox"
        elif c.load >= c.limit:
            c.skipped = f"at capacity ({c.load}/{c.limit})"
        else:
            eligible.append(c)
        report.append({"agent": agent.name, "agent_id": agent.pk, "load": c.load, "limit": c.limit,
                       "skipped": c.skipped or None})
    if not eligible:
        return None, report
    epoch = timezone.make_aware(datetime(1970, 1, 1))

    def idle(c: Candidate):
        return c.agent.last_assigned_at or epoch

    if method == "round_robin":
        chosen = min(eligible, key=lambda c: (idle(c), c.agent.pk))
    elif method == "most_capable":
        chosen = min(eligible, key=lambda c: (-c.skill_level, c.load, idle(c), c.agent.pk))
    elif method == "sticky" and facts.last_agent and sticky_window_open(facts, sticky_minutes) and any(
            c.agent.pk == facts.last_agent.pk for c in eligible):
        chosen = next(c for c in eligible if c.agent.pk == facts.last_agent.pk)
    else:  # least busy: fewest active, tie to the longest idle
        chosen = min(eligible, key=lambda c: (c.load, idle(c), c.agent.pk))
    return chosen, report


def _default_agents(conversation: Conversation) -> list[AgentProfile]:
    return list(AgentProfile.objects.filter(teams__inboxes=conversation.inbox_id).distinct())


@transaction.atomic
def do_route_conversation(*, conversation_id: int, from_queue: bool = False) -> Outcome:
    """Decide who gets a new (or queued) conversation, assign or offer it, and store why.

    Rules run in position order; the first that matches and has an eligible agent in its primary or
    secondary target wins. Then the customer's agent within the reopen window, then the inbox's teams;
    otherwise the configured overflow (queue or ticket). Candidate agent rows are locked in pk order, so
    parallel arrivals never push an agent past their limit.
    """
    from conversations import actions as conv_actions

    conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "contact")
                    .filter(pk=conversation_id).first())
    if conversation is None or conversation.assignee_id or conversation.status != Conversation.Status.OPEN \
            or conversation.merged_into_id:
        QueueEntry.objects.filter(conversation_id=conversation_id).delete()
        return Outcome("skipped")
    entry = QueueEntry.objects.filter(conversation=conversation).first()
    if entry is not None and entry.state == QueueEntry.State.OFFERED:
        return Outcome("skipped")
    if not from_queue and QueueEntry.objects.filter(inbox=conversation.inbox_id, state=QueueEntry.State.WAITING
                                                    ).exclude(conversation=conversation).exists():
        # Others are already waiting for this inbox: join the queue behind them (fairness).
        return _enqueue(conversation, entry, details={"rules": [], "note": "others were waiting"},
                        summary="Queued behind earlier conversations")
    config = RoutingConfig.get()
    facts = gather_facts(conversation)
    excluded = set(entry.excluded_agents) if entry else set()
    explanation: dict[str, Any] = {"rules": [], "targets": []}
    applied = False
    for rule in RoutingRule.objects.filter(is_active=True).select_related(
            "target_agent", "target_team", "target_skill", "secondary_agent", "secondary_team", "secondary_skill",
            "set_team"):
        matched, lines = evaluate(rule, facts)
        explanation["rules"].append({"rule": rule.name, "matched": matched, "conditions": lines})
        if not matched:
            continue
        if not applied:
            _apply_rule_settings(rule, conversation)
            applied = True
        targets = [(rule.target, rule.target_agent, rule.target_team, rule.target_skill)]
        if rule.secondary_target:
            targets.append((rule.secondary_target, rule.secondary_agent, rule.secondary_team, rule.secondary_skill))
        for index, (kind, agent, team, skill) in enumerate(targets):
            agents, description, method = _target_agents(kind, agent=agent, team=team, skill=skill,
                                                         min_level=rule.skill_min_level, facts=facts)
            chosen, report = _choose(agents, conversation=conversation, method=method, skill=skill, facts=facts,
                                     excluded=excluded, sticky_minutes=team.sticky_minutes if team else 1440)
            explanation["targets"].append({"rule": rule.name, "target": description, "method": method,
                                           "candidates": report, "secondary": index > 0})
            if chosen:
                why = f"{rule.name}, {description}" + (" (secondary target)" if index else "")
                return _hand_over(conversation, entry, chosen.agent, team=team, rule=rule, method=method,
                                  summary_reason=why, details=explanation)
    # The customer's agent from a recent conversation, then the inbox's own teams.
    if facts.last_agent and facts.last_closed_at and \
            timezone.now() - facts.last_closed_at <= timedelta(hours=config.reopen_window_hours):
        chosen, report = _choose([facts.last_agent], conversation=conversation, method="sticky", skill=None,
                                 facts=facts, excluded=excluded)
        explanation["targets"].append({"rule": None, "target": "returning customer's agent", "method": "sticky",
                                       "candidates": report})
        if chosen:
            return _hand_over(conversation, entry, chosen.agent, team=None, rule=None, method="sticky",
                              summary_reason="returning customer, same agent", details=explanation)
    chosen, report = _choose(_default_agents(conversation), conversation=conversation, method="least_busy",
                             skill=None, facts=facts, excluded=excluded)
    explanation["targets"].append({"rule": None, "target": "the inbox's teams", "method": "least_busy",
                                   "candidates": report})
    if chosen:
        return _hand_over(conversation, entry, chosen.agent, team=None, rule=None, method="least_busy",
                          summary_reason="default: the inbox's teams, least busy", details=explanation)
    if config.overflow == RoutingConfig.Overflow.TICKET and not _is_chat(conversation):
        QueueEntry.objects.filter(conversation=conversation).delete()
        conv_actions.do_add_tag(actor=None, conversation=conversation, name="follow-up")
        _decision(conversation, "ticket", summary="Nobody available: kept as a ticket for follow-up",
                  details=explanation)
        return Outcome("ticket", summary="ticket")
    return _enqueue(conversation, entry, details=explanation,
                    summary="Queued: no agent online with capacity in any matching target")


def _apply_rule_settings(rule: RoutingRule, conversation: Conversation) -> None:
    from conversations import actions as conv_actions

    if rule.set_priority is not None and rule.set_priority != conversation.priority:
        conv_actions.do_change_priority(actor=None, conversation=conversation, priority=rule.set_priority)
        conversation.priority = rule.set_priority
    for tag in [t for t in rule.set_tags.split(",") if t.strip()]:
        conv_actions.do_add_tag(actor=None, conversation=conversation, name=tag)
    if rule.set_team_id and rule.set_team_id != conversation.team_id:
        conv_actions.do_assign_conversation(actor=None, conversation=conversation, team=rule.set_team)
        conversation.team_id = rule.set_team_id


def _decision(conversation: Conversation, outcome: str, *, summary: str, details: dict, agent=None, rule=None,
              method: str = "") -> RoutingDecision:
    from conversations import actions as conv_actions

    decision = RoutingDecision.objects.create(conversation=conversation, outcome=outcome, agent=agent, rule=rule,
                                              method=method, summary=summary[:300], details=details)
    conv_actions._publish_conversation(conversation, "routed", None, outcome=outcome, summary=decision.summary)
    return decision


def _hand_over(conversation: Conversation, entry: QueueEntry | None, agent: AgentProfile, *, team: Team | None,
               rule: RoutingRule | None, method: str, summary_reason: str, details: dict) -> Outcome:
    from conversations import actions as conv_actions

    now = timezone.now()
    AgentProfile.objects.filter(pk=agent.pk).update(last_assigned_at=now)
    offer_team = team or agent.teams.filter(inboxes=conversation.inbox_id).first()
    if _is_chat(conversation) and offer_team is not None and not offer_team.auto_accept:
        QueueEntry.objects.update_or_create(conversation=conversation, defaults={
            "inbox_id": conversation.inbox_id, "state": QueueEntry.State.OFFERED, "offered_to": agent,
            "offer_expires_at": now + timedelta(seconds=offer_team.offer_timeout_seconds),
            "priority": entry.priority if entry else conversation.priority,
            "enqueued_at": entry.enqueued_at if entry else (conversation.waiting_since or now),
            "excluded_agents": entry.excluded_agents if entry else []})
        summary = f"Offered to {agent.name}: {summary_reason}"
        _decision(conversation, "offered", summary=summary, details=details, agent=agent, rule=rule, method=method)
        publish({"type": "offer", "op": "created", "conversation_id": conversation.id, "agent_id": agent.user_id,
                 "inbox_id": conversation.inbox_id, "expires_in": offer_team.offer_timeout_seconds},
                streams=[inbox_stream(conversation.inbox_id)])
        return Outcome("offered", agent, summary)
    QueueEntry.objects.filter(conversation=conversation).delete()
    assign = {"assignee": agent.user}
    if team is not None and conversation.team_id is None:
        assign["team"] = team
    conv_actions.do_assign_conversation(actor=None, conversation=conversation, **assign)
    summary = f"Routed to {agent.name}: {summary_reason}"
    _decision(conversation, "assigned", summary=summary, details=details, agent=agent, rule=rule, method=method)
    return Outcome("assigned", agent, summary)


def _enqueue(conversation: Conversation, entry: QueueEntry | None, *, details: dict, summary: str) -> Outcome:
    vip = max((s.priority_level for s in conversation.contact.segments.all()), default=0)
    score = vip * 10 + conversation.priority
    if entry is None:
        QueueEntry.objects.create(conversation=conversation, inbox_id=conversation.inbox_id, priority=score,
                                  enqueued_at=conversation.waiting_since or timezone.now())
        _decision(conversation, "queued", summary=summary, details=details)
    elif entry.priority != score:
        entry.priority = score
        entry.save(update_fields=["priority"])
    return Outcome("queued", summary=summary)


def do_drain_queue(*, limit: int = 500) -> int:
    """Give waiting conversations to agents who have room, head of the queue first. Returns how many moved."""
    # Safety net: open, unassigned conversations that were never decided (a lost or failed routing task).
    stale = timezone.now() - timedelta(seconds=60)
    for conversation_id in (Conversation.objects.filter(status=Conversation.Status.OPEN, assignee__isnull=True,
                                                        merged_into__isnull=True, created_at__lt=stale,
                                                        routing_decisions__isnull=True, queue_entry__isnull=True)
                            .values_list("id", flat=True)[:limit]):
        do_route_conversation(conversation_id=conversation_id)
    moved = 0
    blocked: set[int] = set()  # inboxes whose head could not be served: nobody behind it may jump it
    entries = list(QueueEntry.objects.filter(state=QueueEntry.State.WAITING)
                   .order_by("-priority", F("conversation__sla_due_at").asc(nulls_last=True), "enqueued_at", "id")
                   .values_list("conversation_id", "inbox_id")[:limit])
    for conversation_id, inbox_id in entries:
        if inbox_id in blocked:
            continue
        outcome = do_route_conversation(conversation_id=conversation_id, from_queue=True).outcome
        if outcome in ("assigned", "offered"):
            moved += 1
        elif outcome == "queued":
            blocked.add(inbox_id)
    return moved


def queue_position(conversation: Conversation) -> tuple[int | None, int | None]:
    """(1-based place in the inbox's queue, estimated wait in seconds), or (None, None) when not waiting."""
    entry = QueueEntry.objects.filter(conversation=conversation, state=QueueEntry.State.WAITING).first()
    if entry is None:
        return None, None
    ahead = QueueEntry.objects.filter(inbox=entry.inbox_id, state=QueueEntry.State.WAITING).filter(
        Q(priority__gt=entry.priority) | Q(priority=entry.priority, enqueued_at__lt=entry.enqueued_at)
        | Q(priority=entry.priority, enqueued_at=entry.enqueued_at, id__lt=entry.id)).count()
    online = AgentProfile.objects.filter(status=AgentProfile.Status.ONLINE,
                                         teams__inboxes=entry.inbox_id).distinct().count()
    config = RoutingConfig.get()
    return ahead + 1, int((ahead + 1) * config.average_handle_seconds / max(online, 1))


@transaction.atomic
def do_accept_offer(*, user, conversation_id: int) -> Conversation:
    from conversations import actions as conv_actions
    from conversations.actions import ActionError

    entry = QueueEntry.objects.select_for_update(of=("self",)).select_related("offered_to").filter(
        conversation_id=conversation_id, state=QueueEntry.State.OFFERED).first()
    if entry is None or entry.offered_to is None or entry.offered_to.user_id != user.pk:
        raise ActionError("This chat is no longer offered to you")
    conversation = Conversation.objects.get(pk=conversation_id)
    entry.delete()
    conv_actions.do_assign_conversation(actor=None, conversation=conversation, assignee=user)
    _decision(conversation, "assigned", summary=f"{entry.offered_to.name} accepted the chat", details={},
              agent=entry.offered_to, method="offer")
    return conversation


def do_expire_offers() -> int:
    """Offers not accepted in time: the agent goes away, the miss is counted, the chat goes to the next agent."""
    expired = 0
    for entry_id in QueueEntry.objects.filter(state=QueueEntry.State.OFFERED,
                                              offer_expires_at__lte=timezone.now()).values_list("id", flat=True):
        with transaction.atomic():
            entry = QueueEntry.objects.select_for_update(skip_locked=True, of=("self",)).select_related("offered_to").filter(
                pk=entry_id, state=QueueEntry.State.OFFERED, offer_expires_at__lte=timezone.now()).first()
            if entry is None:
                continue
            agent = entry.offered_to
            entry.state = QueueEntry.State.WAITING
            entry.excluded_agents = sorted({*entry.excluded_agents, *([agent.pk] if agent else [])})
            entry.offered_to = None
            entry.offer_expires_at = None
            entry.save(update_fields=["state", "excluded_agents", "offered_to", "offer_expires_at"])
            if agent is not None:
                AgentProfile.objects.filter(pk=agent.pk).update(missed_offers=F("missed_offers") + 1)
                do_set_agent_status(agent=agent, status=AgentProfile.Status.AWAY, reason="missed a chat offer")
            _decision(entry.conversation, "missed", agent=agent,
                      summary=f"{agent.name if agent else 'Agent'} did not accept in time", details={})
            expired += 1
        do_route_conversation(conversation_id=entry.conversation_id, from_queue=True)
    return expired
