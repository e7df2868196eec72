"""A conversation's status (``do_change_status``: open, pending, on hold, solved, closed), priority
(``do_change_priority``; ``change_priority_locked`` for an action that holds the row lock, routing's) and
subject (``do_change_subject``).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from omnichannel.errors import ActionError, check_text

from .. import hooks
from ..models import (
    Conversation,
    ConversationEvent,
)
from .common import (
    check_agent_can_write,
    lock_conversation,
    publish_conversation,
    publish_to_visitor,
    record_event,
    write_change,
)


@transaction.atomic
def do_change_status(*, actor: AbstractBaseUser | None, conversation: Conversation, status: str) -> Conversation:
    if status not in Conversation.Status.values:
        raise ActionError(f"Unknown status {status!r}", field="status")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = lock_conversation(conversation)
    old = conversation.status
    if old == status:
        return conversation
    now = timezone.now()
    conversation.status = status
    fields = ["status", "solved_at", "closed_at", "updated_at"]
    if status == Conversation.Status.SOLVED:
        conversation.solved_at = now
    elif status == Conversation.Status.CLOSED:
        conversation.closed_at = now
        conversation.solved_at = conversation.solved_at or now
    else:
        conversation.solved_at = None
        conversation.closed_at = None
    conversation.save(update_fields=fields)
    record_event(conversation, ConversationEvent.Kind.STATUS_CHANGED, actor, old=old, new=status)
    hooks.status_changed(conversation=conversation, old=old, new=status)
    publish_conversation(conversation, "status", actor, old_status=old)
    publish_to_visitor(conversation, {"type": "status", "conversation_id": conversation.id, "status": status,
                                       "active": conversation.is_active})
    if status == Conversation.Status.OPEN and old != status and conversation.assignee_id is None \
            and not conversation.merged_into_id:
        # back to open with nobody on it: routed at once
        hooks.conversation_released(conversation=conversation, released_user_id=None, for_team=None)
    return conversation


@transaction.atomic
def do_change_priority(*, actor: AbstractBaseUser | None, conversation: Conversation, priority: int
                       ) -> Conversation:
    """Set the conversation's priority. The writes bypass the ORM: raw SQL in one round trip (write_change)."""
    try:
        priority = int(priority)
    except (TypeError, ValueError):
        raise ActionError("Priority must be one of low, normal, high, urgent", field="priority")
    if priority not in Conversation.Priority.values:
        raise ActionError("Priority must be one of low, normal, high, urgent", field="priority")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = change_priority_locked(actor=actor, conversation=lock_conversation(conversation), priority=priority)
    hooks.priority_changed(conversation=conversation)  # a waiting conversation moves in the queue
    return conversation


def change_priority_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, priority: int
                            ) -> Conversation:
    """The writes and events of do_change_priority for an action that holds `conversation`'s row lock in its
    transaction and passes a valid priority (routing: a rule's). Raw SQL, not the ORM (write_change)."""
    old = conversation.priority
    if old == priority:
        return conversation
    conversation.priority = priority
    match = write_change(conversation, actor, ConversationEvent.Kind.PRIORITY_CHANGED, {"old": old, "new": priority},
                         priority=priority)
    publish_conversation(conversation, "priority", actor)
    hooks.match_changed(conversation=conversation, policy_or_clock=match)
    return conversation


@transaction.atomic
def do_change_subject(*, actor: AbstractBaseUser | None, conversation: Conversation, subject: str) -> Conversation:
    subject = check_text((subject or "").strip(), field="subject", label="The subject")
    if len(subject) > 255:
        raise ActionError("Subject is longer than 255 characters", field="subject")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = lock_conversation(conversation)
    if conversation.subject == subject:
        return conversation
    old = conversation.subject
    conversation.subject = subject
    conversation.save(update_fields=["subject", "updated_at"])
    record_event(conversation, ConversationEvent.Kind.SUBJECT_CHANGED, actor, old=old, new=subject)
    publish_conversation(conversation, "subject", actor)
    return conversation
