"""Routing's actions: rules, distribution, capacity, queue, offers (agents' roles and presence: agents.actions).

One module per topic; this package re-exports the public API, so callers import from `routing.actions`:

- `shared`: a decision's `Outcome`, `record_decision`, the queue entry's excluded agents, `is_chat`;
- `capacity`: agents' loads (`do_reconcile_loads`, `chats_offered`); the load SQL is in routing.queries;
- `queue`: the queue's order and places, joining and leaving it, the recheck of reopened conversations;
- `decision`: `do_route_conversation`, its candidates, claim, rules' settings and hand-over;
- `drain`: serving the queue (`do_drain_queue`, `route_logged`);
- `offers`: accepting, expiring and offering again live chats' offers.

Each imports only the ones above it in this list (no cycles); the raw SQL of all of them is in
routing.queries.
"""

from .capacity import chats_offered, do_reconcile_loads
from .decision import SEES_ALL_INBOXES, Candidate, Source, do_route_conversation
from .drain import do_drain_queue, route_logged
from .offers import do_accept_offer, do_expire_offers, offer_again
from .queue import (
    QUEUE_SCORE_MAX,
    do_recheck_reopened,
    enqueue,
    leave_queue,
    leave_queue_assigned,
    leave_queue_merged,
    queue_position,
    queue_score,
    refresh_queue_scores,
    requeue,
)
from .shared import EXCLUDED_REASON, Outcome, agent_ids, is_chat, record_decision, refused_agents

__all__ = [
    "EXCLUDED_REASON",
    "QUEUE_SCORE_MAX",
    "SEES_ALL_INBOXES",
    "Candidate",
    "Outcome",
    "Source",
    "agent_ids",
    "chats_offered",
    "do_accept_offer",
    "do_drain_queue",
    "do_expire_offers",
    "do_recheck_reopened",
    "do_reconcile_loads",
    "do_route_conversation",
    "enqueue",
    "is_chat",
    "leave_queue",
    "leave_queue_assigned",
    "leave_queue_merged",
    "offer_again",
    "queue_position",
    "queue_score",
    "record_decision",
    "refresh_queue_scores",
    "refused_agents",
    "requeue",
    "route_logged",
]
