"""SLA's handlers for the core's hook points (conversations/hooks.py), registered by SlaConfig.ready().

Each runs inside the calling action's transaction, with the conversation's row lock held, so the clocks
change atomically with what changed them.
"""

from __future__ import annotations

from conversations import hooks
from conversations.models import Conversation

from . import actions


def start_clocks(*, conversation: Conversation) -> None:
    actions.on_conversation_created(conversation)


def customer_wrote(*, conversation: Conversation, **_) -> None:
    actions.on_customer_message(conversation)


def agent_replied(*, conversation: Conversation) -> None:
    actions.on_agent_reply(conversation)


def status_changed(*, conversation: Conversation, old: str, new: str) -> None:
    actions.on_status_changed(conversation, old, new)


def match_changed(*, conversation: Conversation, policy_or_clock: bool | None = None) -> None:
    actions.on_match_changed(conversation, policy_or_clock=policy_or_clock)


def match_check_sql(*, conversation_id: int) -> tuple[str, list]:
    return actions.any_policy_or_clock_sql(conversation_id)


def contact_changed(*, contact) -> None:
    """A contact's segment or attributes changed: the SLA policy of its active conversations may change."""
    for conversation in (Conversation.objects.select_for_update(of=("self",))
                         .select_related("inbox", "contact", "team")
                         .filter(contact=contact, status__in=Conversation.ACTIVE_STATUSES)):
        actions.on_match_changed(conversation)


def register() -> None:
    hooks.conversation_created.register(start_clocks)
    hooks.customer_wrote.register(customer_wrote)
    hooks.agent_replied.register(agent_replied)
    hooks.status_changed.register(status_changed)
    hooks.match_changed.register(match_changed)
    hooks.match_check_sql.register(match_check_sql)
    hooks.contact_changed.register(contact_changed)
