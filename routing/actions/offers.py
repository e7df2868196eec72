"""Offers of live chats: an agent accepts one (`do_accept_offer`), one not accepted in time passes to the
next agent (`do_expire_offers`), and an agent who comes online may be offered again the chats they missed
(`offer_again`). Making an offer is the decision's hand-over (routing.actions.decision)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.actions import do_set_agent_status
from agents.models import AgentProfile
from conversations import actions as conv_actions
from conversations.models import Conversation
from omnichannel.errors import ActionError

from .. import tasks
from ..models import QueueEntry
from .drain import route_logged
from .shared import agent_ids, record_decision


def offer_again(agent: AgentProfile) -> None:
    """`agent` (row-locked) came online: a missed offer passed that chat to the next agent; now the agent may be
    offered it again (or a chat in a one-agent team would wait for ever), and the queue is served after commit."""
    for entry in QueueEntry.objects.select_for_update().exclude(excluded_agents=[]):
        if agent.pk in agent_ids(entry.excluded_agents):
            entry.excluded_agents = [a for a in agent_ids(entry.excluded_agents) if a != agent.pk]
            entry.save(update_fields=["excluded_agents"])
    tasks.drain_queue.delay_on_commit()


@transaction.atomic
def do_accept_offer(*, user, conversation_id: int) -> Conversation:
    entry = QueueEntry.objects.select_for_update(of=("self",)).select_related("offered_to").filter(
        conversation_id=conversation_id, state=QueueEntry.State.OFFERED).first()
    if entry is None or entry.offered_to is None or entry.offered_to.user_id != user.pk:
        raise ActionError("This chat is no longer offered to you")
    if entry.offer_expires_at is None or entry.offer_expires_at <= timezone.now():
        # Expired, even if the sweep has not passed it on yet: the sweep gives it to the next agent.
        raise ActionError("This offer has expired; the chat goes to the next agent")
    conversation = Conversation.objects.get(pk=conversation_id)
    if conversation.status != Conversation.Status.OPEN or conversation.merged_into_id:
        raise ActionError("This chat has ended")
    entry.delete()
    conv_actions.do_assign_conversation(actor=None, conversation=conversation, assignee=user)
    record_decision(conversation, "assigned", summary=f"{entry.offered_to.name} accepted the chat", details={},
                    agent=entry.offered_to, method="offer")
    return conversation


def do_expire_offers() -> int:
    """Offers not accepted in time: the agent goes away, the miss is counted, the chat goes to the next agent."""
    expired = 0
    # An offer without an expiry time (written outside the actions, e.g. in the admin) counts as expired.
    due = Q(offer_expires_at__lte=timezone.now()) | Q(offer_expires_at__isnull=True)
    for entry_id in QueueEntry.objects.filter(due, state=QueueEntry.State.OFFERED).values_list("id", flat=True):
        with transaction.atomic():
            entry = QueueEntry.objects.select_for_update(skip_locked=True, of=("self",)).select_related("offered_to").filter(
                Q(offer_expires_at__lte=timezone.now()) | Q(offer_expires_at__isnull=True), pk=entry_id,
                state=QueueEntry.State.OFFERED).first()
            if entry is None:
                continue
            agent = entry.offered_to
            entry.state = QueueEntry.State.WAITING
            entry.excluded_agents = sorted({*agent_ids(entry.excluded_agents), *([agent.pk] if agent else [])})
            entry.offered_to = None
            entry.offer_expires_at = None
            entry.save(update_fields=["state", "excluded_agents", "offered_to", "offer_expires_at"])
            if agent is not None:
                AgentProfile.objects.filter(pk=agent.pk).update(missed_offers=F("missed_offers") + 1)
                if AgentProfile.objects.filter(pk=agent.pk, status=AgentProfile.Status.ONLINE).exists():
                    # Online agents are set away; one who went offline meanwhile stays offline.
                    do_set_agent_status(agent=agent, status=AgentProfile.Status.AWAY, reason="missed a chat offer")
            record_decision(entry.conversation, "missed", agent=agent,
                            summary=f"{agent.name if agent else 'Agent'} did not accept in time", details={})
            expired += 1
        route_logged(entry.conversation_id, from_queue=True)
    return expired
