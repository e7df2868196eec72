"""Routing's handlers for the core's hook points (conversations/hooks.py, agents/hooks.py), registered by
RoutingConfig.ready().

Each runs inside the calling action's transaction; work that must see the committed state (a routing
decision, a queue drain) is enqueued on commit.
"""

from __future__ import annotations

from agents import hooks as agent_hooks
from conversations import hooks
from conversations.models import Conversation

from . import tasks
from .actions import (
    chats_offered,
    leave_queue,
    leave_queue_assigned,
    leave_queue_merged,
    offer_again,
    refresh_queue_scores,
    requeue,
)


def route_new(*, conversation: Conversation) -> None:
    tasks.route_conversation.delay_on_commit(conversation.id)


def recheck_reopened(*, conversation: Conversation, reopened_from: str | None, solved_at) -> None:
    """Back to the same agent when available (online, with room, within the reopen window); else routed."""
    if reopened_from == Conversation.Status.SOLVED and conversation.assignee_id:
        tasks.recheck_reopened.delay_on_commit(conversation.id, solved_at.isoformat() if solved_at else None)


def leave_queue_when_not_open(*, conversation: Conversation, old: str, new: str) -> None:
    if old == Conversation.Status.OPEN:
        leave_queue(conversation)


def replace_in_queue(*, conversation: Conversation) -> None:
    refresh_queue_scores(conversation_id=conversation.pk)


def replace_contact_in_queue(*, contact) -> None:
    refresh_queue_scores(contact_id=contact.pk)


def route_released(*, conversation: Conversation, released_user_id: int | None, for_team) -> None:
    requeue(conversation, released_user_id=released_user_id, for_team=for_team)


def drain_queue(**_) -> None:
    tasks.drain_queue.delay_on_commit()


def leave_queue_when_assigned(*, conversation: Conversation, assignee) -> None:
    leave_queue_assigned(conversation, assignee)


def leave_queue_when_merged(*, source: Conversation, target: Conversation) -> None:
    leave_queue_merged(source)


def chats_offered_to(*, agent, exclude: int | None = None):
    """The live chats offered to the agent and waiting for their accept (an expression; see chats_held)."""
    return chats_offered(agent=agent, exclude=exclude)


def offer_again_when_online(*, agent) -> None:
    offer_again(agent)


def register() -> None:
    hooks.conversation_created.register(route_new)
    hooks.customer_wrote.register(recheck_reopened)
    hooks.status_changed.register(leave_queue_when_not_open)
    hooks.priority_changed.register(replace_in_queue)
    hooks.contact_changed.register(replace_contact_in_queue)
    hooks.conversation_released.register(route_released)
    hooks.capacity_freed.register(drain_queue)
    hooks.agent_assigned.register(leave_queue_when_assigned)
    hooks.conversation_merged.register(leave_queue_when_merged)
    hooks.chats_held.register(chats_offered_to)
    agent_hooks.agent_online.register(offer_again_when_online)
