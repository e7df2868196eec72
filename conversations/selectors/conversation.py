"""The conversation view's reads: the contact's message history across its conversations (HistoryMessage rows,
queries.history_sql), the timeline events (TimelineEvent rows, queries.events_sql) and the message length limit.
The side panel's one statement reads engine and widget tables and lives in conversations/panel.py."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Exists, OuterRef, prefetch_related_objects

from .. import queries
from ..models import Attachment, Conversation, ConversationEvent, Inbox, Message
from ..queries import HISTORY_FIELDS
from .access import visible_inboxes

# --- The conversation view --------------------------------------------------------

HISTORY_PAGE = 100


def get_contact_history(user: AbstractBaseUser, conversation: Conversation, *, before_id: int | None = None,
                        after_id: int | None = None, limit: int = HISTORY_PAGE,
                        inboxes: list[Inbox] | None = None) -> list[Message | HistoryMessage]:
    """The contact's messages across every visible conversation and channel, oldest first.

    Messages (the newer-than page) or, for the latest and the older pages, HistoryMessage rows with the same
    attributes (console_html.render_messages reads either), read by raw SQL (queries.history_sql), not the ORM.

    Each message comes with its sender (name fields) and inbox (from `inboxes`, the user's visible inboxes,
    fetched when not given); attachments are prefetched for the messages whose ``has_attachments`` is true
    (the others have none: don't ask their manager, it would query).
    Queries: 1 (visible inboxes, unless `inboxes` is given) + 1 (messages) + 1 (attachments, if any).
    """
    if inboxes is None:
        inboxes = visible_inboxes(user)
    by_id = {inbox.id: inbox for inbox in inboxes}
    inbox_ids = sorted(by_id)
    if after_id is None:
        # Newest `limit` messages per conversation (index message_conversation_id), then the newest overall:
        # bounded by limit x the contact's conversations, not by their whole history. One hand-written
        # statement (building and compiling the ORM's took ~0.8 ms of CPU) read into HistoryMessage rows.
        sql = queries.history_sql().format(before=" AND m.id < %s" if before_id is not None else "")
        params = [inbox_ids, *([before_id] if before_id is not None else []), limit, conversation.contact_id, limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            records = cursor.fetchall()
        page = [HistoryMessage(*record[:11], inbox=by_id[record[2]],
                               sender_user=HistorySender(*record[11:14]) if record[5] is not None else None,
                               has_attachments=record[14])
                for record in records]
        with_files = [m for m in page if m.has_attachments]
        if with_files:
            by_message = {m.id: m for m in with_files}
            for attachment in Attachment.objects.filter(message_id__in=sorted(by_message)).order_by("id"):
                by_message[attachment.message_id].attachments.append(attachment)
        return page
    qs = (
        Message.objects.filter(conversation__contact_id=conversation.contact_id, inbox_id__in=inbox_ids)
        .select_related("sender_user").only(*HISTORY_FIELDS)
        .annotate(has_attachments=Exists(Attachment.objects.filter(message_id=OuterRef("pk"))))
    )
    if after_id is not None:
        page = list(qs.filter(id__gt=after_id).order_by("id")[:limit])
    else:
        if before_id is not None:
            qs = qs.filter(id__lt=before_id)
        page = list(qs.order_by("-id")[:limit])
        page.reverse()
    inbox_field = Message._meta.get_field("inbox")
    for message in page:
        inbox_field.set_cached_value(message, by_id[message.inbox_id])
    with_files = [m for m in page if m.has_attachments]
    if with_files:
        prefetch_related_objects(with_files, "attachments")
    return page


class HistorySender:
    """A message's sender user: the name fields the history shows."""

    __slots__ = ("username", "first_name", "last_name")

    def __init__(self, username: str, first_name: str, last_name: str):
        self.username, self.first_name, self.last_name = username, first_name, last_name

    def get_full_name(self) -> str:  # AbstractUser.get_full_name
        return f"{self.first_name} {self.last_name}".strip()


class _Files(list):
    """A message's attachments, read like the related manager (``m.attachments.all()``)."""

    def all(self):
        return self


class HistoryMessage:
    """One history message as the console shows it (get_contact_history's raw SQL): the columns of
    HISTORY_FIELDS, its inbox, its sender user (or None) and its attachments (``.attachments.all()``)."""

    __slots__ = ("id", "conversation_id", "inbox_id", "direction", "sender_type", "sender_user_id", "kind", "body",
                 "delivery_status", "failure_reason", "created_at", "inbox", "sender_user", "has_attachments",
                 "attachments")

    def __init__(self, id, conversation_id, inbox_id, direction, sender_type, sender_user_id, kind, body,  # noqa: A002
                 delivery_status, failure_reason, created_at, *, inbox, sender_user, has_attachments):
        self.id, self.conversation_id, self.inbox_id = id, conversation_id, inbox_id
        self.direction, self.sender_type, self.sender_user_id, self.kind = direction, sender_type, sender_user_id, kind
        self.body, self.delivery_status, self.failure_reason = body, delivery_status, failure_reason
        self.created_at, self.inbox, self.sender_user = created_at, inbox, sender_user
        self.has_attachments, self.attachments = has_attachments, _Files()

    def __repr__(self) -> str:
        return f"<HistoryMessage #{self.id}>"


class TimelineEvent:
    """One activity line of the panel (conversation_events): kind, data, time and actor (or None)."""

    __slots__ = ("id", "kind", "data", "created_at", "actor")

    def __init__(self, id, kind, data, created_at, actor):  # noqa: A002
        self.id, self.kind, self.data, self.created_at, self.actor = id, kind, data, created_at, actor

    def get_kind_display(self) -> str:  # as the model's
        return _EVENT_LABELS.get(self.kind, self.kind)

    def __repr__(self) -> str:
        return f"<TimelineEvent #{self.id} {self.kind}>"


_EVENT_LABELS = dict(ConversationEvent.Kind.choices)


def conversation_events(conversation: Conversation, limit: int = 20) -> list:
    """The conversation's latest `limit` timeline events, newest first, each with its actor's name fields:
    ``conversation.events.select_related("actor")[:limit]`` read by one hand-written statement (raw SQL, not
    the ORM) into TimelineEvent rows."""
    meta = ConversationEvent._meta
    sql = queries.events_sql()
    data_field = meta.get_field("data")
    with connection.cursor() as cursor:
        cursor.execute(sql, [conversation.id, int(limit)])
        records = cursor.fetchall()
    return [TimelineEvent(pk, kind, data_field.from_db_value(data, None, connection), created_at,
                          HistorySender(username, first, last) if actor_id is not None else None)
            for pk, kind, data, created_at, actor_id, username, first, last in records]


def max_body_length() -> int:
    return settings.MAX_MESSAGE_LENGTH
