"""Helpers every topic module of the actions shares, public so that they import them by name.

The limits of a message (``MAX_ATTACHMENT_BYTES``); the write-access check (``check_agent_can_write``); the
conversation's row lock every property change takes (``lock_conversation``); the timeline
(``record_event``, ``actor_name``); the real-time events and their publishing (``message_event``,
``publish_conversation``, ``publish_contact_changed``, and the web-chat visitor's streams:
``visitor_streams``, ``publish_to_visitor``, ``publish_agent_card``); system lines in a web chat
(``system_message``, ``system_line``, ``publish_system_line``); a message body's checks and preview
(``clean_body``, ``message_preview``); attachments (``save_attachments``); and ``write_change``, the
one-round-trip raw SQL of a priority or tags change. Nothing here is an action of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from omnichannel import pgtrip
from omnichannel.errors import ActionError, clean_text
from omnichannel.realtime import inbox_stream, publish

from .. import channels, hooks, queries
from ..models import (
    Attachment,
    Contact,
    Conversation,
    ConversationEvent,
    Inbox,
    Message,
)
from ..payloads import agent_card, visitor_stream, widget_message
from ..selectors import can_see_inbox

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def check_agent_can_write(actor: AbstractBaseUser, conversation: Conversation) -> None:
    """The write-access check of every action an agent takes in a conversation: the agent must see its
    inbox (``selectors.can_see_inbox``), else ActionError."""
    if not can_see_inbox(actor, conversation.inbox_id):
        raise ActionError("You cannot write in this conversation")


def lock_conversation(conversation: Conversation) -> Conversation:
    """The conversation, re-read with its row locked (FOR UPDATE of the conversation only), its inbox loaded:
    the lock every change of a conversation's properties takes first."""
    # The inbox comes along (every caller reads its kind); only the conversation row is locked.
    return Conversation.objects.select_for_update(of=("self",)).select_related("inbox").get(pk=conversation.pk)


def record_event(conversation: Conversation, kind: str, actor: AbstractBaseUser | None, **data: Any) -> ConversationEvent:
    """A row of the conversation's timeline (ConversationEvent) of `kind`, by `actor` (None: the system)."""
    return ConversationEvent.objects.create(conversation=conversation, kind=kind, actor=actor, data=data)


def actor_name(actor: AbstractBaseUser | None) -> str:
    """The name the console and the widget show for `actor`: the agent's name, else the user's; "System" for
    None (an action of the system's)."""
    if actor is None:
        return "System"
    agent = getattr(actor, "agent", None)
    if agent is not None:
        return agent.name
    return actor.get_full_name() or actor.get_username()


def _conversation_event(conversation: Conversation, op: str, actor: AbstractBaseUser | None = None,
                        **extra: Any) -> dict[str, Any]:
    return {
        "type": "conversation",
        "op": op,
        "conversation_id": conversation.id,
        "inbox_id": conversation.inbox_id,
        "status": conversation.status,
        "priority": conversation.priority,
        "assignee_id": conversation.assignee_id,
        "team_id": conversation.team_id,
        "actor_id": actor.pk if actor else None,
        **extra,
    }


def publish_conversation(conversation: Conversation, op: str, actor: AbstractBaseUser | None = None,
                          **extra: Any) -> None:
    """Publish a ``conversation`` event (`op`: assigned, status, priority, subject, tags, …) with the
    conversation's state to its inbox's stream."""
    publish(_conversation_event(conversation, op, actor, **extra), streams=[inbox_stream(conversation.inbox_id)])


def publish_contact_changed(contact: Contact, actor: AbstractBaseUser | None) -> None:
    """Publish a contact's ``updated`` event to the streams of every inbox it has conversations in."""
    inbox_ids = set(contact.conversations.values_list("inbox_id", flat=True))
    if inbox_ids:
        publish({"type": "contact", "op": "updated", "contact_id": contact.id,
                 "actor_id": actor.pk if actor else None}, streams=[inbox_stream(i) for i in inbox_ids])


def clean_body(body: str | None, *, allow_empty: bool = False) -> str:
    """A message body stripped of NUL (lone surrogates made "?", clean_text) and surrounding space; ActionError when empty (unless `allow_empty`) or
    longer than settings.MAX_MESSAGE_LENGTH."""
    body = clean_text(body or "").strip()
    if not body and not allow_empty:
        raise ActionError("Message body is empty", field="body")
    if len(body) > settings.MAX_MESSAGE_LENGTH:
        raise ActionError(f"Message is longer than {settings.MAX_MESSAGE_LENGTH} characters", field="body")
    return body


def message_preview(body: str, attachments: Sequence[Any] = ()) -> str:
    """The conversation list's one-line preview of a message (200 characters; a paperclip for files only)."""
    text = " ".join(body.split())
    if not text and attachments:
        text = "📎 attachment"
    return text[:200]


def save_attachments(message: Message, files: Iterable[UploadedFile]) -> list[Attachment]:
    """Store `files` as `message`'s attachments; ActionError for a file over MAX_ATTACHMENT_BYTES."""
    saved = []
    for f in files:
        if f.size > MAX_ATTACHMENT_BYTES:
            raise ActionError(f"{f.name} is larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB", field="files")
        att = Attachment(message=message, filename=(f.name or "file")[:255], size=f.size,
                         content_type=(getattr(f, "content_type", None) or "application/octet-stream")[:100])
        att.file.save(att.filename, f, save=False)
        att.save()
        saved.append(att)
    return saved


def message_event(message: Message, op: str = "created", **extra: Any) -> dict[str, Any]:
    """The ``message`` event of `message` (`op`: created, delivery, …) that consoles receive; `extra` adds keys."""
    return {
        "type": "message",
        "op": op,
        "conversation_id": message.conversation_id,
        "inbox_id": message.inbox_id,
        "message_id": message.id,
        "contact_id": message.conversation.contact_id,
        "direction": message.direction,
        "kind": message.kind,
        "sender_type": message.sender_type,
        "delivery_status": message.delivery_status,
        **extra,
    }


def visitor_streams(conversation: Conversation, inbox: Inbox | None = None) -> list[str]:
    """The widget streams of a web-chat conversation's visitor (all their browsers); [] for other channels."""
    inbox = inbox or conversation.inbox
    if not channels.for_inbox(inbox).can(channels.WIDGET):
        return []
    return [visitor_stream(inbox.id, conversation.contact_id)]


def publish_to_visitor(conversation: Conversation, event: dict[str, Any], inbox: Inbox | None = None) -> None:
    streams = visitor_streams(conversation, inbox)
    if streams:
        publish(event, streams=streams)


def system_message(conversation: Conversation, body: str) -> Message:
    """A system line's message, not saved yet."""
    return Message(conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
                   sender_type=Message.SenderType.SYSTEM, body=body, delivery_status=Message.DeliveryStatus.SENT)


def system_line(conversation: Conversation, body: str) -> Message:
    """A system line in a web chat ("Alice joined the chat"), shown to the visitor and in the console."""
    message = system_message(conversation, body)
    message.save(force_insert=True)  # as Message.objects.create()
    publish_system_line(conversation, message)
    return message


def publish_system_line(conversation: Conversation, message: Message) -> None:
    """Publish a saved system line to the console and the web-chat visitor."""
    publish(message_event(message), streams=[inbox_stream(conversation.inbox_id)])
    publish_to_visitor(conversation, {"type": "message", "message": widget_message(message, attachments=[])})


def publish_agent_card(conversation: Conversation, user: AbstractBaseUser) -> None:
    """Tell a web-chat visitor who is now answering them (the agent's card)."""
    publish_to_visitor(conversation, {"type": "agent", "conversation_id": conversation.id,
                                       "agent": agent_card(user)})


def write_change(conversation: Conversation, actor: AbstractBaseUser | None, kind: str, data: dict[str, Any], *,
                 priority: int | None = None, tags: tuple[list[str], list[str]] | None = None) -> bool:
    """PostgreSQL, one round trip: a change of the conversation's priority or tags (the tags created on first
    use, the conversation's links added and removed), its updated_at, and the timeline event: the writes
    save(update_fields) / get_or_create + tags.add/remove, and record_event() make, without building the ORM
    statements (no signals listen to these models). The same trip reads hooks.match_check_sql_of (whether an
    engine must re-match the conversation), returned for hooks.match_changed."""
    now = timezone.now()
    conversation.updated_at = now
    statements = pgtrip.split(*queries.change_write_sql(conversation.pk, actor.pk if actor else None, kind,
                                                        json.dumps(data), now, priority=priority, tags=tags))
    check_sql, check_params = hooks.match_check_sql_of(conversation.pk)
    statements.append((f"SELECT {check_sql}", check_params))
    return bool(pgtrip.trip(statements)[-1][0][0])
