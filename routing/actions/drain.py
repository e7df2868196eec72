"""Serving the queue: `do_drain_queue` decides the waiting conversations, head of the queue first, after a
safety net for open conversations never decided; `route_logged` is a decision for a sweep (a failure is
logged and left for the next sweep). Above routing.actions.decision, which the queue module sits below (a
decision that finds nobody joins the queue)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from conversations.models import Conversation

from ..models import QueueEntry, RoutingDecision
from .decision import do_route_conversation
from .queue import in_queue_order
from .shared import Outcome

logger = logging.getLogger(__name__)


def _candidate_agents(details: dict) -> frozenset[int]:
    return frozenset(c["agent_id"] for t in details.get("targets") or [] for c in t.get("candidates") or []
                     if c.get("agent_id") is not None)


def route_logged(conversation_id: int, *, from_queue: bool = False, held: frozenset[int] = frozenset()) -> Outcome:
    """do_route_conversation for a sweep: a conversation whose decision fails (its transaction rolled back) is
    logged and left for the next sweep, and the sweep goes on with the others; its outcome ("failed" then)."""
    try:
        return do_route_conversation(conversation_id=conversation_id, from_queue=from_queue, held=held)
    except Exception:
        logger.exception("routing conversation %s failed; the next sweep tries again", conversation_id)
        return Outcome("failed")


def do_drain_queue(*, limit: int = 500) -> int:
    """Give waiting conversations to agents who have room, head of the queue first. Returns how many moved."""
    # Safety net: open, unassigned conversations that were never decided (a lost or failed routing task).
    # Also the conversations left without an agent after a decision assigned them (a deleted agent, an
    # unassignment whose routing task was lost): open, unassigned, not waiting, and not kept as a ticket.
    stale = timezone.now() - timedelta(seconds=60)
    last_outcome = Subquery(RoutingDecision.objects.filter(conversation_id=OuterRef("pk")).order_by("-id")
                            .values("outcome")[:1])
    for conversation_id in (Conversation.objects.filter(status=Conversation.Status.OPEN, assignee__isnull=True,
                                                        merged_into__isnull=True, created_at__lt=stale,
                                                        queue_entry__isnull=True)
                            .annotate(last_outcome=last_outcome)
                            .filter(Q(last_outcome__isnull=True) | ~Q(last_outcome=RoutingDecision.Outcome.TICKET))
                            .order_by("id").values_list("id", flat=True)[:limit]):
        route_logged(conversation_id)
    # The queue is served strictly in its order (in_queue_order). An entry that stays queued tells which agents
    # could not take it (offline, full, ...): they are held for it, so no entry behind it gets one of them in
    # this pass, even if one frees up meanwhile (that free starts a pass of its own, from the head). An entry
    # behind it whose candidates, as its last stored decision examined them, are all held is skipped without a
    # new decision. Any other entry is decided: its rules may target someone else (an account manager, a
    # specialist outside the inbox's teams).
    moved = 0
    held: set[int] = set()
    entries = list(in_queue_order(QueueEntry.objects.filter(state=QueueEntry.State.WAITING))
                   .values_list("conversation_id", flat=True)[:limit])
    for conversation_id in entries:
        if held:
            details = (RoutingDecision.objects.filter(conversation_id=conversation_id).order_by("-id")
                       .values_list("details", flat=True).first())
            known = _candidate_agents(details) if isinstance(details, dict) else frozenset()
            if known and known <= held:
                continue
        outcome = route_logged(conversation_id, from_queue=True, held=frozenset(held))
        if outcome.outcome in ("assigned", "offered"):
            moved += 1
        elif outcome.outcome == "queued":
            held |= outcome.refused
    return moved
