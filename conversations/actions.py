"""Every state change of contacts, conversations and messages happens here.

Views, the REST API, websocket consumers, Celery tasks, webhooks and the admin all
call these functions. Each one runs in a transaction, records a timeline row where
the conversation changes, and publishes a real-time event that is delivered after
commit (``omnichannel.realtime.publish``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agents.models import AgentProfile, Team
from omnichannel import pgtrip, realtime
from omnichannel.db import columns, from_row, sql_literal
from omnichannel.errors import ActionError
from omnichannel.realtime import inbox_stream, publish, publish_ephemeral

from . import channels, hooks
from .conditions import segment_matches
from .models import (
    Attachment,
    Contact,
    ContactIdentity,
    ContactSegment,
    Conversation,
    ConversationEvent,
    InboundDelivery,
    Inbox,
    Message,
    Segment,
    Tag,
)
from .payloads import agent_card, visitor_stream, widget_message

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_TAGS = 30


_UNCHANGED: Any = object()


# --- small helpers -----------------------------------------------------------------


def record_event(conversation: Conversation, kind: str, actor: AbstractBaseUser | None, **data: Any) -> ConversationEvent:
    return ConversationEvent.objects.create(conversation=conversation, kind=kind, actor=actor, data=data)


def actor_name(actor: AbstractBaseUser | None) -> str:
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
    publish(_conversation_event(conversation, op, actor, **extra), streams=[inbox_stream(conversation.inbox_id)])


def _clean_body(body: str | None, *, allow_empty: bool = False) -> str:
    body = (body or "").replace("\x00", "").strip()
    if not body and not allow_empty:
        raise ActionError("Message body is empty", field="body")
    if len(body) > settings.MAX_MESSAGE_LENGTH:
        raise ActionError(f"Message is longer than {settings.MAX_MESSAGE_LENGTH} characters", field="body")
    return body


def _preview(body: str, attachments: Sequence[Any] = ()) -> str:
    text = " ".join(body.split())
    if not text and attachments:
        text = "📎 attachment"
    return text[:200]


def _save_attachments(message: Message, files: Iterable[UploadedFile]) -> list[Attachment]:
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


def _visitor_streams(conversation: Conversation, inbox: Inbox | None = None) -> list[str]:
    """The widget streams of a web-chat conversation's visitor (all their browsers); [] for other channels."""
    inbox = inbox or conversation.inbox
    if not channels.for_inbox(inbox).can(channels.WIDGET):
        return []
    return [visitor_stream(inbox.id, conversation.contact_id)]


def _publish_to_visitor(conversation: Conversation, event: dict[str, Any], inbox: Inbox | None = None) -> None:
    streams = _visitor_streams(conversation, inbox)
    if streams:
        publish(event, streams=streams)


def _system_message(conversation: Conversation, body: str) -> Message:
    """A system line's message, not saved yet."""
    return Message(conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
                   sender_type=Message.SenderType.SYSTEM, body=body, delivery_status=Message.DeliveryStatus.SENT)


def system_line(conversation: Conversation, body: str) -> Message:
    """A system line in a web chat ("Alice joined the chat"), shown to the visitor and in the console."""
    message = _system_message(conversation, body)
    message.save(force_insert=True)  # as Message.objects.create()
    _publish_system_line(conversation, message)
    return message


def _publish_system_line(conversation: Conversation, message: Message) -> None:
    publish(message_event(message), streams=[inbox_stream(conversation.inbox_id)])
    _publish_to_visitor(conversation, {"type": "message", "message": widget_message(message, attachments=[])})


def _insert_returning_pk(obj: Any) -> tuple[str, list]:
    """The INSERT (with RETURNING the primary key) that obj.save(force_insert=True) makes, as (SQL, params), for
    an action to send in a round trip of its own statements; then _inserted(obj, pk). The model must have no
    signal receivers (none in this project listens to a model's save). An object whose primary key is set
    (reserved with nextval) is inserted with it, and nothing is returned."""
    from django.db.models.sql import InsertQuery

    meta = type(obj)._meta
    with_pk = obj.pk is not None
    fields = [f for f in meta.local_concrete_fields
              if (with_pk or f is not meta.auto_field) and not getattr(f, "generated", False)]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = None if with_pk else [meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, list(params)


def _inserted(obj: Any, pk: Any) -> None:
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


def _publish_agent_card(conversation: Conversation, user: AbstractBaseUser) -> None:
    _publish_to_visitor(conversation, {"type": "agent", "conversation_id": conversation.id,
                                       "agent": agent_card(user)})


# --- contacts ----------------------------------------------------------------------


def get_or_create_contact(*, kind: str, scope: str, value: str, name: str = "", email: str = "",
                           phone: str = "", country: str = "") -> tuple[Contact, bool]:
    identity = ContactIdentity.objects.select_related("contact").filter(kind=kind, scope=scope, value=value).first()
    if identity is not None:
        contact = identity.contact
        while contact.merged_into_id:  # an identity never points at a merged contact, but be safe
            contact = contact.merged_into
        return contact, False
    try:
        with transaction.atomic():
            contact = Contact.objects.create(name=name[:200], email=email[:254], phone=phone[:32],
                                             country=country[:2].upper())
            ContactIdentity.objects.create(contact=contact, kind=kind, scope=scope, value=value)
    except IntegrityError:
        # A concurrent delivery created the same identity first.
        identity = ContactIdentity.objects.select_related("contact").get(kind=kind, scope=scope, value=value)
        return identity.contact, False
    do_apply_segment_rules(contact)
    return contact, True


@transaction.atomic
def do_update_contact(*, actor: AbstractBaseUser | None, contact: Contact, name: str | None = None,
                      email: str | None = None, phone: str | None = None, country: str | None = None,
                      language: str | None = None, custom_attributes: dict | None = None) -> Contact:
    changed = []
    for fname, value in (("name", name), ("email", email), ("phone", phone), ("country", country),
                         ("language", language)):
        if value is not None and getattr(contact, fname) != value:
            setattr(contact, fname, value)
            changed.append(fname)
    if custom_attributes is not None:
        if not isinstance(custom_attributes, dict):
            raise ActionError("custom_attributes must be an object", field="custom_attributes")
        contact.custom_attributes = custom_attributes
        changed.append("custom_attributes")
    if changed:
        contact.full_clean(exclude=["segments"])
        contact.save(update_fields=[*changed, "updated_at"])
        do_apply_segment_rules(contact)
        hooks.contact_changed(contact=contact)
        _publish_contact_changed(contact, actor)
    return contact


def _publish_contact_changed(contact: Contact, actor: AbstractBaseUser | None) -> None:
    inbox_ids = set(contact.conversations.values_list("inbox_id", flat=True))
    if inbox_ids:
        publish({"type": "contact", "op": "updated", "contact_id": contact.id,
                 "actor_id": actor.pk if actor else None}, streams=[inbox_stream(i) for i in inbox_ids])


def do_apply_segment_rules(contact: Contact) -> None:
    """Bring rule-based segment memberships of `contact` up to date (manual ones are untouched)."""
    rule_segments = list(Segment.objects.exclude(rule__isnull=True))
    if not rule_segments:
        return
    current = {
        cs.segment_id: cs for cs in ContactSegment.objects.filter(contact=contact, segment__in=rule_segments)
    }
    for segment in rule_segments:
        matches = segment_matches(segment.rule, contact)
        existing = current.get(segment.id)
        if matches and existing is None:
            ContactSegment.objects.create(contact=contact, segment=segment, source=ContactSegment.Source.RULE)
        elif not matches and existing is not None and existing.source == ContactSegment.Source.RULE:
            existing.delete()


@transaction.atomic
def do_set_contact_segments(*, actor: AbstractBaseUser | None, contact: Contact,
                            segment_ids: Iterable[int]) -> None:
    """Set the hand-picked segments of `contact`; rule-based memberships stay as their rules say."""
    wanted = set(Segment.objects.filter(id__in=list(segment_ids)).values_list("id", flat=True))
    manual = ContactSegment.objects.filter(contact=contact, source=ContactSegment.Source.MANUAL)
    manual.exclude(segment_id__in=wanted).delete()
    have = set(ContactSegment.objects.filter(contact=contact).values_list("segment_id", flat=True))
    ContactSegment.objects.bulk_create(
        [ContactSegment(contact=contact, segment_id=sid, source=ContactSegment.Source.MANUAL)
         for sid in wanted - have]
    )
    hooks.contact_changed(contact=contact)
    _publish_contact_changed(contact, actor)


@transaction.atomic
def do_merge_contacts(*, actor: AbstractBaseUser | None, source: Contact, target: Contact) -> Contact:
    """Move all of `source`'s identities, conversations and segments to `target`, keeping all history."""
    if source.pk == target.pk:
        raise ActionError("A contact cannot be merged into itself")
    locked = {c.pk: c for c in Contact.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
              .order_by("pk")}
    source, target = locked[source.pk], locked[target.pk]
    if source.merged_into_id or target.merged_into_id:
        raise ActionError("One of these contacts was already merged")
    ContactIdentity.objects.filter(contact=source).update(contact=target)
    conv_ids = list(Conversation.objects.filter(contact=source).values_list("id", flat=True))
    Conversation.objects.filter(contact=source).update(contact=target)
    have = set(ContactSegment.objects.filter(contact=target).values_list("segment_id", flat=True))
    for cs in ContactSegment.objects.filter(contact=source):
        if cs.segment_id not in have:
            ContactSegment.objects.create(contact=target, segment_id=cs.segment_id, source=cs.source)
    ContactSegment.objects.filter(contact=source).delete()
    changed = []
    for fname in ("name", "email", "phone", "country", "language"):
        if not getattr(target, fname) and getattr(source, fname):
            setattr(target, fname, getattr(source, fname))
            changed.append(fname)
    merged_attrs = {**source.custom_attributes, **target.custom_attributes}
    if merged_attrs != target.custom_attributes:
        target.custom_attributes = merged_attrs
        changed.append("custom_attributes")
    if changed:
        target.save(update_fields=[*changed, "updated_at"])
    source.merged_into = target
    source.save(update_fields=["merged_into", "updated_at"])
    streams = set()
    for conversation in Conversation.objects.filter(id__in=conv_ids):
        record_event(conversation, ConversationEvent.Kind.CONTACT_MERGED, actor, source_contact_id=source.pk,
                target_contact_id=target.pk)
        streams.add(inbox_stream(conversation.inbox_id))
    do_apply_segment_rules(target)
    streams |= {inbox_stream(i) for i in target.conversations.values_list("inbox_id", flat=True)}
    if streams:
        publish({"type": "contact", "op": "merged", "contact_id": target.pk, "source_contact_id": source.pk,
                 "actor_id": actor.pk if actor else None}, streams=streams)
    return target


# --- inbound -----------------------------------------------------------------------


@dataclass
class InboundResult:
    message: Message
    created: bool  # False when the provider's message id was already stored (a retried delivery)
    new_conversation: bool = False


def identity_scope(inbox: Inbox) -> str:
    """The scope of a sender's id on `inbox`: the inbox for ids that mean something only there (page-scoped
    ids, visitors, API source ids), "" for global ones (an email address, a phone number)."""
    return str(inbox.pk) if channels.for_inbox(inbox).identity_per_inbox else ""


def do_receive_inbound_message(
    *,
    inbox: Inbox,
    source_id: str,
    body: str,
    provider_message_id: str | None = None,
    contact_name: str = "",
    contact_email: str = "",
    contact_phone: str = "",
    contact_country: str = "",
    subject: str = "",
    attachments: Iterable[UploadedFile] = (),
    meta: dict | None = None,
    message_meta: dict | None = None,
    conversation: Conversation | None = None,
    media_pending: bool = False,
    expect_new: bool = False,
) -> InboundResult:
    """Store a customer's message, the one inbound path every channel calls.

    `source_id` is the customer's id on this channel (address, number, PSID…). `meta` goes on a new
    conversation (what the channel knows of it), `message_meta` on the message (threading headers, post ids:
    what the provider says of this message, keyed by channel kind). A message whose
    `provider_message_id` is already stored for this inbox is not stored again (`created=False`).
    `expect_new`: the caller expects a new message (the widget has its own client ids), so the id is not
    looked up first: a duplicate is caught by the unique constraint instead (still `created=False`, at
    the cost of a rolled-back transaction).
    A known customer's message bypasses the ORM: raw SQL in prepared statements (_lock_known_customer).
    """
    if not inbox.is_active:
        raise ActionError("This inbox is disabled")
    attachments = list(attachments)
    # media_pending: attachments that a worker downloads after the webhook is acknowledged (MMS).
    body = _clean_body(body, allow_empty=bool(attachments) or media_pending)
    # PostgreSQL text cannot hold NUL: whatever a channel passes through is stripped of it, never a 500.
    source_id = (source_id or "").replace("\x00", "").strip()
    contact_name, contact_email, contact_phone, subject = (
        (value or "").replace("\x00", "") for value in (contact_name, contact_email, contact_phone, subject))
    if not source_id:
        raise ActionError("The customer's id on this channel (source_id) is required", field="source_id")
    if len(source_id) > 255:
        raise ActionError("source_id is longer than 255 characters", field="source_id")
    if provider_message_id is not None:
        provider_message_id = str(provider_message_id).replace("\x00", "").strip()[:255] or None
        if provider_message_id and not expect_new:
            existing = Message.objects.filter(inbox=inbox, provider_message_id=provider_message_id).first()
            if existing is not None:
                return InboundResult(existing, created=False)
    receive = functools.partial(
        _receive, inbox=inbox, source_id=source_id, body=body, provider_message_id=provider_message_id,
        contact_name=contact_name, contact_email=contact_email, contact_phone=contact_phone,
        contact_country=contact_country, subject=subject, attachments=attachments, meta=meta,
        message_meta=message_meta if isinstance(message_meta, dict) else {}, conversation=conversation)
    try:
        try:
            with transaction.atomic():
                return receive()
        except _LockOrderRace:
            # The one-trip lookup locked a conversation without its contact (see _lock_known_customer): that
            # attempt was rolled back, with its locks; the general path locks the contact first.
            with transaction.atomic():
                return receive(one_trip=False)
    except IntegrityError:
        if provider_message_id:
            existing = Message.objects.filter(inbox=inbox, provider_message_id=provider_message_id).first()
            if existing is not None:  # a concurrent retry of the same delivery won the race
                return InboundResult(existing, created=False)
        raise


def _receive(*, inbox: Inbox, source_id: str, body: str, provider_message_id: str | None, contact_name: str,
             contact_email: str, contact_phone: str, contact_country: str, subject: str, attachments: list[UploadedFile],
             meta: dict | None, message_meta: dict, conversation: Conversation | None, one_trip: bool = True
             ) -> InboundResult:
    kind = channels.for_inbox(inbox).identity
    # A live message does not join an offline-form ticket nobody has taken yet: it starts a chat that is
    # routed (the ticket stays in the console for its answer by email).
    live = not (meta or {}).get("offline")
    # One inbound message per contact at a time: two first messages arriving together must
    # land in one conversation (the lock is released at commit). A known customer's contact is
    # found and locked in one statement (with its conversation, in one round trip).
    known = None
    if one_trip and conversation is None:
        known = _lock_known_customer(inbox, kind, source_id, live=live)
    message_id = None
    if known is not None:
        contact, conversation, message_id = known
    else:
        identity = (ContactIdentity.objects.select_related("contact").select_for_update(of=("contact",))
                    .filter(kind=kind, scope=identity_scope(inbox), value=source_id).first())
        if identity is not None and not identity.contact.merged_into_id:
            contact = identity.contact
        else:
            contact, _ = get_or_create_contact(kind=kind, scope=identity_scope(inbox), value=source_id,
                                                name=contact_name, email=contact_email, phone=contact_phone,
                                                country=contact_country)
            Contact.objects.select_for_update().filter(pk=contact.pk).first()
        if conversation is not None:
            conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
            if conversation.contact_id != contact.id or conversation.inbox_id != inbox.id:
                raise ActionError("That conversation belongs to another contact or inbox", field="conversation_id")
            for _hop in range(10):  # a merged conversation: the message goes to the one it was merged into
                if not conversation.merged_into_id:
                    break
                conversation = Conversation.objects.select_for_update().get(pk=conversation.merged_into_id)
            if conversation.merged_into_id or conversation.contact_id != contact.id or conversation.inbox_id != inbox.id:
                raise ActionError("That conversation was merged into another one; write to that one instead",
                                  field="conversation_id")
        else:
            candidates = (Conversation.objects.select_for_update()
                          .filter(inbox=inbox, contact=contact, merged_into__isnull=True,
                                  status__in=[*Conversation.ACTIVE_STATUSES, Conversation.Status.SOLVED]))
            if live:
                candidates = candidates.exclude(meta__has_key="offline", assignee__isnull=True)
            conversation = candidates.order_by("-id").first()
    now = timezone.now()
    new_conversation = False
    if conversation is None:
        conversation = Conversation.objects.create(inbox=inbox, contact=contact, subject=subject[:255],
                                                   meta=meta or {})
        new_conversation = True
        record_event(conversation, ConversationEvent.Kind.CREATED, None, channel=inbox.kind)
    message = Message(
        conversation=conversation, inbox=inbox, direction=Message.Direction.INCOMING,
        sender_type=Message.SenderType.CONTACT, body=body, provider_message_id=provider_message_id,
        delivery_status=Message.DeliveryStatus.RECEIVED, meta=message_meta,
    )
    # A message to a conversation in progress, with no files and no batch of the caller's open (whose events
    # must keep their place before this one's), is written in one round trip below.
    one_trip = message_id is not None and not new_conversation and not attachments and not realtime.batching()
    if one_trip:
        message.id, message.created_at = message_id, now
    else:
        message.save(force_insert=True)
    saved = _save_attachments(message, attachments)
    fields = ["last_customer_message_at", "last_message_at", "last_message_preview", "updated_at"]
    conversation.last_customer_message_at = now
    conversation.last_message_at = now
    conversation.last_message_preview = _preview(body, attachments)
    if conversation.waiting_since is None:
        conversation.waiting_since = now
        fields.append("waiting_since")
    reopened_from = None
    solved_at = conversation.solved_at
    if conversation.status != Conversation.Status.OPEN:
        # A customer writing again reopens a pending, on-hold or solved ticket.
        record_event(conversation, ConversationEvent.Kind.STATUS_CHANGED, None, old=conversation.status, new="open")
        reopened_from = conversation.status
        conversation.status = Conversation.Status.OPEN
        conversation.solved_at = None
        fields += ["status", "solved_at"]
    if meta and not new_conversation:
        conversation.meta = {**conversation.meta, **meta}
        fields.append("meta")
    if one_trip and reopened_from:  # the SLA's reaction to the reopening runs between the writes: as before
        message.save(force_insert=True)
        one_trip = False
    inbox_event = message_event(message, new_conversation=new_conversation, preview=conversation.last_message_preview)
    if one_trip:
        _write_inbound(message, conversation, fields, now, [
            (inbox_event, inbox_stream(inbox.id)),
            *(({"type": "message", "message": widget_message(message, saved)}, stream)
              for stream in _visitor_streams(conversation, inbox)),
        ])
    else:
        conversation.save(update_fields=fields)
        if reopened_from and not new_conversation:
            hooks.status_changed(conversation=conversation, old=reopened_from, new=Conversation.Status.OPEN)
        publish(inbox_event, streams=[inbox_stream(inbox.id)])
        _publish_to_visitor(conversation, {"type": "message", "message": widget_message(message, saved)}, inbox)
    if new_conversation:
        hooks.conversation_created(conversation=conversation)
    else:
        hooks.customer_wrote(conversation=conversation, reopened_from=reopened_from, solved_at=solved_at)
    return InboundResult(message, created=True, new_conversation=new_conversation)


class _LockOrderRace(Exception):
    """_lock_known_customer locked rows out of order; the caller rolls back and takes the general path."""


def _lock_known_customer(inbox: Inbox, kind: str, source_id: str, *, live: bool = True
                         ) -> tuple[Contact, Conversation | None, int] | None:
    """PostgreSQL, one round trip (three prepared statements): lock the contact of a known identity, as _receive's ORM
    query does; then lock its latest open, pending, on-hold or solved conversation in this inbox (None if it has
    none); and reserve the next message id. None (nothing locked) for an unknown identity or a merged contact:
    _receive then takes its general path. The lock order is the general path's: contact, then conversation."""
    identities, contacts = ContactIdentity._meta.db_table, Contact._meta.db_table
    conversations, messages = Conversation._meta.db_table, Message._meta.db_table
    find = (f'FROM {identities} i JOIN {contacts} c ON c.id = i.contact_id '
            f'WHERE i.kind = %s AND i.scope = %s AND i.value = %s')
    statuses = [*Conversation.ACTIVE_STATUSES, Conversation.Status.SOLVED]
    identity = [kind, identity_scope(inbox), source_id]
    # Sent through omnichannel.pgtrip: prepared once per connection, in one pipeline; the statuses written in,
    # so the generic plan knows them.
    results = pgtrip.execute(
        f"SELECT {columns(Contact, 'c')} {find} FOR UPDATE OF c; "
        f"SELECT {columns(Conversation, 'v')} FROM {conversations} v WHERE v.inbox_id = %s "
        f"AND v.merged_into_id IS NULL AND v.status IN ({', '.join(sql_literal(s) for s in statuses)}) "
        + ("AND NOT (jsonb_exists(v.meta, 'offline') AND v.assignee_id IS NULL) " if live else "") +
        f"AND v.contact_id = (SELECT c.id {find} AND c.merged_into_id IS NULL) "
        f"ORDER BY v.id DESC LIMIT 1 FOR UPDATE OF v; "
        f"SELECT nextval(pg_get_serial_sequence('{messages}', 'id'))",
        [*identity, inbox.pk, *identity])
    contact_row = results[0][0] if results[0] else None
    conversation_row = results[1][0] if results[1] else None
    (message_id,) = results[2][0]
    if contact_row is None:
        if conversation_row is not None:
            # The identity was committed between the first two statements: the conversation is locked but its
            # contact is not, the reverse of every other path's order (a deadlock with one that holds the
            # contact). Start again from the contact.
            raise _LockOrderRace
        return None
    contact = from_row(Contact, contact_row)
    if contact.merged_into_id:
        return None
    conversation = from_row(Conversation, conversation_row) if conversation_row is not None else None
    if conversation is not None:
        conversation.contact, conversation.inbox = contact, inbox
    return contact, conversation, message_id


def _write_inbound(message: Message, conversation: Conversation, fields: list[str], now, events) -> None:
    """PostgreSQL, one round trip: the message's INSERT (its id reserved by _lock_known_customer), the
    conversation's UPDATE of `fields` and the events' replay log (publish_many, sent after commit): the writes
    Message.objects.create, save(update_fields) and publish() make (no signals listen to these models)."""
    quote = connection.ops.quote_name
    conversation.updated_at = now
    if "updated_at" not in fields:
        fields = [*fields, "updated_at"]
    message_fields = Message._meta.concrete_fields
    update_fields = [Conversation._meta.get_field(name) for name in fields]
    sql = (f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in message_fields)}) "
           f"VALUES ({', '.join(['%s'] * len(message_fields))}); "
           f"UPDATE {quote(Conversation._meta.db_table)} "
           f"SET {', '.join(f'{quote(f.column)} = %s' for f in update_fields)} WHERE id = %s")
    params = [f.get_db_prep_save(getattr(message, f.attname), connection) for f in message_fields]
    params += [f.get_db_prep_save(getattr(conversation, f.attname), connection) for f in update_fields]
    params.append(conversation.pk)
    realtime.publish_many(events, before=(sql, params))
    message._state.adding = False
    message._state.db = connection.alias


def check_inbound_body(body: str | None, *, media: bool = False) -> str:
    """The checks do_receive_inbound_message applies to a body, for a webhook that answers before storing it."""
    return _clean_body(body, allow_empty=media)


def do_record_inbound_delivery(*, inbox: Inbox, provider_message_id: str, sender: str, payload: dict) -> int | None:
    """Store a verified inbound webhook once per (inbox, provider message id), in one statement.

    Returns the new row's id, or None when that id was already stored (a retried or concurrent delivery:
    the statement waits for the other insert and then does nothing). Outside a transaction the row is
    committed on return, so the caller may acknowledge the provider.
    """
    meta = InboundDelivery._meta
    values = {"inbox_id": inbox.pk, "provider_message_id": provider_message_id[:255], "sender": sender[:255],
              "payload": payload, "received_at": timezone.now(), "attempts": 0, "error": ""}
    columns = [meta.get_field(name.removesuffix("_id") if name == "inbox_id" else name) for name in values]
    params = [field.get_db_prep_save(value, connection) for field, value in zip(columns, values.values(), strict=True)]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))}) "
           f"ON CONFLICT ({quote('inbox_id')}, {quote('provider_message_id')}) DO NOTHING RETURNING {quote('id')}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def do_process_inbound_delivery(*, delivery_id: int) -> int:
    """Turn a stored inbound delivery into its message, exactly once, with its channel's ``receive`` (the
    provider's parser, which calls do_receive_inbound_message).

    Earlier unprocessed deliveries of the same sender are processed first, in arrival order, so two quick
    messages never swap places when tasks run in parallel. Each row is locked and marked processed in the
    transaction that stores its message: a redelivered task, a parallel worker or a re-drive after a crash
    finds it processed (or waits for the lock, then does). Bad input (ActionError) marks the row processed
    with the reason; any other failure of the target row rolls everything back, counts an attempt and
    re-raises (retried); an earlier row failing that way is counted and skipped. Returns how many rows were
    processed.
    """
    try:
        with transaction.atomic():
            target = InboundDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).values(
                "inbox_id", "sender").first()
            if target is None:
                return 0
            rows = list(InboundDelivery.objects.select_for_update(of=("self",)).select_related("inbox")
                        .filter(inbox_id=target["inbox_id"], sender=target["sender"], processed_at__isnull=True,
                                id__lte=delivery_id).order_by("id"))
            handle = channels.channel(rows[0].inbox.kind).receive if rows else None
            for row in rows:
                try:
                    with transaction.atomic():
                        row.message = handle(row)
                except ActionError as exc:
                    row.message, row.error = None, exc.message[:500]
                except Exception as exc:
                    if row.pk == delivery_id:
                        raise
                    # An earlier row that keeps failing must not hold its sender's later messages back: it stays
                    # unprocessed (counted, with its error) for its own task and the re-drive.
                    InboundDelivery.objects.filter(pk=row.pk).update(
                        attempts=F("attempts") + 1, error=f"{exc.__class__.__name__}: {exc}"[:500])
                    continue
                row.processed_at = timezone.now()
                row.save(update_fields=["processed_at", "message", "error"])
            return sum(1 for row in rows if row.processed_at)
    except Exception as exc:
        InboundDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).update(
            attempts=F("attempts") + 1, error=f"{exc.__class__.__name__}: {exc}"[:500])
        raise


# --- agent replies and notes -------------------------------------------------------


def check_agent_can_write(actor: AbstractBaseUser, conversation: Conversation) -> None:
    from .selectors import can_see_inbox

    if not can_see_inbox(actor, conversation.inbox_id):
        raise ActionError("You cannot write in this conversation")


@transaction.atomic
def do_send_agent_reply(*, actor: AbstractBaseUser, conversation: Conversation, body: str,
                        attachments: Iterable[UploadedFile] = ()) -> Message:
    """Queue a public reply to the customer; a Celery task delivers it after commit."""
    from .tasks import deliver_outbound_message

    check_agent_can_write(actor, conversation)
    attachments = list(attachments)
    body = _clean_body(body, allow_empty=bool(attachments))
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.merged_into_id:
        raise ActionError(f"This conversation was merged into #{conversation.merged_into_id}; reply there")
    _check_can_send(conversation)
    now = timezone.now()
    fields = ["last_message_at", "last_message_preview", "waiting_since", "updated_at"]
    if conversation.assignee_id is None:
        # The agent who answers an unassigned conversation takes it (within their chat limit).
        _check_chat_capacity(actor, conversation)
        conversation.assignee = actor
        fields.append("assignee")
        record_event(conversation, ConversationEvent.Kind.ASSIGNED, actor, old_assignee=None, new_assignee=actor.pk,
                reason="replied")
        publish_conversation(conversation, "assigned", actor, reason="replied")
        if channels.for_inbox(conversation.inbox).can(channels.WIDGET):
            system_line(conversation, f"{actor_name(actor)} joined the chat")
            _publish_agent_card(conversation, actor)
    message = Message.objects.create(
        conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
        sender_type=Message.SenderType.AGENT, sender_user=actor, body=body,
        delivery_status=Message.DeliveryStatus.QUEUED,
    )
    _save_attachments(message, attachments)
    if conversation.first_agent_reply_at is None:
        conversation.first_agent_reply_at = now
        fields.append("first_agent_reply_at")
    conversation.last_message_at = now
    conversation.last_message_preview = _preview(body, attachments)
    conversation.waiting_since = None
    conversation.save(update_fields=fields)
    publish(message_event(message, preview=conversation.last_message_preview, assignee_id=conversation.assignee_id),
            streams=[inbox_stream(conversation.inbox_id)])
    _publish_to_visitor(conversation, {"type": "message", "message": widget_message(message)})
    hooks.agent_replied(conversation=conversation)
    deliver_outbound_message.delay_on_commit(message.id)
    return message


@transaction.atomic
def do_add_note(*, actor: AbstractBaseUser, conversation: Conversation, body: str,
                attachments: Iterable[UploadedFile] = ()) -> Message:
    """An internal note: shown to agents, never sent to the customer."""
    check_agent_can_write(actor, conversation)
    attachments = list(attachments)
    body = _clean_body(body, allow_empty=bool(attachments))
    message = Message.objects.create(
        conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
        sender_type=Message.SenderType.AGENT, sender_user=actor, kind=Message.Kind.NOTE, body=body,
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    _save_attachments(message, attachments)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    publish(message_event(message), streams=[inbox_stream(conversation.inbox_id)])
    return message


@transaction.atomic
def do_update_delivery_status(*, message: Message, status: str, reason: str = "",
                              provider_message_id: str | None = None) -> bool:
    """Move a message's delivery status forward only; `failed` is terminal. Returns whether it changed."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    current = message.delivery_status
    if current == status or current == Message.DeliveryStatus.FAILED:
        return False
    if status != Message.DeliveryStatus.FAILED:
        order = Message.DELIVERY_ORDER
        if status not in order or order.get(current, -1) >= order[status]:
            return False
    message.delivery_status = status
    fields = ["delivery_status"]
    if status == Message.DeliveryStatus.FAILED:
        message.failure_reason = reason[:500]
        fields.append("failure_reason")
        record_event(message.conversation, ConversationEvent.Kind.DELIVERY_FAILED, None, message_id=message.id,
                reason=message.failure_reason)
    if provider_message_id and not message.provider_message_id:
        message.provider_message_id = provider_message_id[:255]
        fields.append("provider_message_id")
    message.save(update_fields=fields)
    publish(message_event(message, op="delivery", failure_reason=message.failure_reason),
            streams=[inbox_stream(message.inbox_id)])
    return True


def do_notify_typing(*, conversation: Conversation, who: str, typing: bool, actor: AbstractBaseUser | None = None
                     ) -> None:
    """Typing indicators are transient: delivered live, never stored or replayed."""
    publish_ephemeral({"type": "typing", "conversation_id": conversation.id, "who": who, "typing": bool(typing),
                       "actor_id": actor.pk if actor else None},
                      groups=[inbox_stream(conversation.inbox_id)])
    if who == "agent":
        publish_ephemeral({"type": "typing", "typing": bool(typing), "agent": agent_card(actor)},
                          groups=_visitor_streams(conversation))


@transaction.atomic
def do_mark_read(*, conversation: Conversation, by: str, up_to: int, actor: AbstractBaseUser | None = None) -> int:
    """Read receipts. `by="contact"`: the customer read agent messages up to `up_to`;
    `by="agent"`: an agent read the customer's messages. Returns how many messages changed."""
    if by == "contact":
        qs = Message.objects.filter(conversation=conversation, id__lte=up_to, direction=Message.Direction.OUTGOING,
                                    kind=Message.Kind.MESSAGE, sender_type__in=["agent", "bot"],
                                    delivery_status__in=["queued", "sending", "sent", "delivered"])
    elif by == "agent":
        qs = Message.objects.filter(conversation=conversation, id__lte=up_to, direction=Message.Direction.INCOMING,
                                    delivery_status=Message.DeliveryStatus.RECEIVED)
    else:
        raise ActionError("by must be contact or agent")
    ids = sorted(qs.values_list("id", flat=True))
    if not ids:
        return 0
    Message.objects.filter(id__in=ids).update(delivery_status=Message.DeliveryStatus.READ)
    publish({"type": "message", "op": "read", "by": by, "conversation_id": conversation.id,
             "contact_id": conversation.contact_id, "inbox_id": conversation.inbox_id, "first_id": ids[0],
             "up_to": ids[-1], "actor_id": actor.pk if actor else None},
            streams=[inbox_stream(conversation.inbox_id)])
    if by == "agent":
        _publish_to_visitor(conversation, {"type": "read", "by": "agent", "up_to": ids[-1]})
    return len(ids)


# --- conversation properties ---------------------------------------------------------


def _may_exceed_capacity(actor: AbstractBaseUser | None) -> bool:
    """Supervisors, admins and the system may assign beyond an agent's limit (shown in the console)."""
    if actor is None:
        return True
    return agent_role_of(actor) in (AgentProfile.Role.SUPERVISOR, AgentProfile.Role.ADMIN)


def _check_chat_capacity(user: AbstractBaseUser, conversation: Conversation) -> None:
    """An agent works live chats up to their concurrent limit (other channels are asynchronous)."""
    from .selectors import held_chats

    if not channels.for_inbox(conversation.inbox).live:
        return
    agent = AgentProfile.objects.select_for_update().filter(user=user).first()
    if agent is None:
        return
    # The load as routing counts it (routing.actions._load_sql): open live chats and the live chats an engine
    # holds for the agent (routing: offered to them); pending and on-hold chats wait for the customer and do not
    # count (as in Zendesk's capacity). Read after the agent's lock, in statements of their own.
    active = Conversation.objects.filter(assignee=user, inbox__kind__in=channels.live_kinds(),
                                         status=Conversation.Status.OPEN).exclude(pk=conversation.pk).count()
    held = held_chats(exclude=conversation.pk)
    if held is not None:
        active += AgentProfile.objects.filter(pk=agent.pk).annotate(held=held).values_list("held", flat=True).get()
    if active >= agent.max_concurrent:
        raise ActionError(f"{agent.name} already has {active} live chats (limit {agent.max_concurrent}); "
                          "end one first or ask a supervisor", field="assignee")


def _check_can_send(conversation: Conversation) -> None:
    """Channel rules that refuse a send up front, with a message the agent can act on (an SMS opt-out)."""
    check = channels.for_inbox(conversation.inbox).check_send
    if check is not None:
        check(conversation.inbox, conversation)


def _lock(conversation: Conversation) -> Conversation:
    # The inbox comes along (every caller reads its kind); only the conversation row is locked.
    return Conversation.objects.select_for_update(of=("self",)).select_related("inbox").get(pk=conversation.pk)


@transaction.atomic
def do_assign_conversation(*, actor: AbstractBaseUser | None, conversation: Conversation,
                           assignee: AbstractBaseUser | None = _UNCHANGED, team: Team | None = _UNCHANGED,
                           note: str = "") -> Conversation:
    """Assign or transfer a conversation to an agent and/or a team (None clears).
    The writes bypass the ORM: raw SQL in one round trip (_write_assignment)."""
    from .selectors import list_agents_for_assignment

    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = _lock(conversation)
    if (actor is not None and team is not _UNCHANGED and team is not None and team.pk != conversation.team_id
            and not team.inboxes.filter(pk=conversation.inbox_id).exists()):
        raise ActionError(f"The {team.name} team does not work the {conversation.inbox.name} inbox (its agents "
                          "could not see this conversation)", field="team")
    if (team is not _UNCHANGED and team is not None and assignee is _UNCHANGED and conversation.assignee_id
            and team.pk != conversation.team_id and not team.members.filter(user_id=conversation.assignee_id).exists()):
        assignee = None  # a transfer to a team its agent is not in: it waits for that team's agents
    if (actor is not None and assignee is not _UNCHANGED and conversation.assignee_id not in (None, actor.pk)
            and (assignee.pk if assignee else None) != conversation.assignee_id and not _may_exceed_capacity(actor)):
        # Agents take unassigned conversations and transfer their own; supervisors reassign anything.
        raise ActionError(f"{actor_name(conversation.assignee)} is working on this conversation; only a supervisor "
                          "can reassign it", field="assignee")
    if assignee is not _UNCHANGED and assignee is not None and assignee.pk != conversation.assignee_id:
        if not list_agents_for_assignment(conversation).filter(user=assignee).exists():
            raise ActionError(f"{actor_name(assignee)} cannot work conversations of this inbox", field="assignee")
        if not _may_exceed_capacity(actor):
            _check_chat_capacity(assignee, conversation)
    old_assignee = conversation.assignee_id
    conversation = assign_locked(actor=actor, conversation=conversation, assignee=assignee, team=team, note=note)
    if conversation.assignee_id is not None and conversation.assignee_id != old_assignee:
        # Out of routing's queue; an offer of it to someone else is withdrawn.
        hooks.agent_assigned(conversation=conversation, assignee=conversation.assignee)
    return conversation


def assign_locked(*, actor: AbstractBaseUser | None, conversation: Conversation,
                   assignee: AbstractBaseUser | None = _UNCHANGED, team: Team | None = _UNCHANGED,
                   note: str = "", sla_policy_or_clock: bool | None = None,
                   also: tuple[str, list] | None = None, message_id: int | None = None,
                   defer_writes: bool = False, reroute: bool = True) -> Conversation:
    """The writes and events of do_assign_conversation, for an action that holds `conversation`'s row lock in
    its transaction (with the inbox loaded) and has checked that `assignee` may work it: routing, which
    chose the agent among those who see the inbox. The engines' queues are not touched here: do_assign_conversation
    calls hooks.agent_assigned, and routing, assigning itself, drops its queue entry in `also`.
    `sla_policy_or_clock`: see sla.actions.on_match_changed. `also`: a statement of the caller's (SQL, params; no
    result), sent in the same round trip as the assignment's writes. `defer_writes`: the caller reads nothing of
    what this writes before its realtime.batched() block ends, so the writes may go with the events' log then
    (realtime.defer), one round trip for both; not when an SLA re-match of a new team reads them, nor for a web
    chat's system line unless `message_id` is an id the caller reserved for it (nextval). `reroute=False`: routing
    itself sets the team of a conversation it is deciding (no new routing). Raw SQL, not the ORM
    (_write_assignment)."""
    changes: dict[str, Any] = {}
    if assignee is not _UNCHANGED and (assignee.pk if assignee else None) != conversation.assignee_id:
        changes.update(old_assignee=conversation.assignee_id, new_assignee=assignee.pk if assignee else None)
        conversation.assignee = assignee
    if team is not _UNCHANGED and (team.pk if team else None) != conversation.team_id:
        changes.update(old_team=conversation.team_id, new_team=team.pk if team else None)
        conversation.team = team
    if not changes:
        if also is not None:
            with connection.cursor() as cursor:
                cursor.execute(*also)
        if note.strip() and actor is not None:  # nothing to transfer: the note is kept all the same
            do_add_note(actor=actor, conversation=conversation, body=note)
        return conversation
    line = None  # the web chat's system line
    widget = channels.for_inbox(conversation.inbox).can(channels.WIDGET)
    if "new_assignee" in changes and assignee is not None and widget:
        name = actor_name(assignee)
        line = (f"{name} joined the chat" if changes["old_assignee"] is None else f"You've been transferred to {name}")
    line = _system_message(conversation, line) if line is not None else None
    if line is not None and message_id is not None:
        line.pk = message_id
    defer = defer_writes and (line is None or line.pk is not None) and (
        "new_team" not in changes or sla_policy_or_clock is False)
    _write_assignment(conversation, actor, data={**changes, "note": note[:1000]}, also=also, message=line,
                      defer=defer)
    if "new_assignee" in changes and changes["old_assignee"] is not None:
        hooks.capacity_freed()
    if (reroute and conversation.assignee_id is None and conversation.status == Conversation.Status.OPEN
            and not conversation.merged_into_id and ("new_assignee" in changes or "new_team" in changes)):
        hooks.conversation_released(conversation=conversation, released_user_id=changes.get("old_assignee"),
                                    for_team=team if "new_team" in changes and team is not None else None)
    if line is not None:  # written with the assignment
        _publish_system_line(conversation, line)
        _publish_agent_card(conversation, assignee)
    elif ("new_assignee" in changes and assignee is None and "new_team" in changes and team is not None
          and widget):
        system_line(conversation, f"You've been transferred to the {team.name} team")
    if note.strip() and actor is not None:
        Message.objects.create(conversation=conversation, inbox_id=conversation.inbox_id,
                               direction=Message.Direction.OUTGOING, sender_type=Message.SenderType.AGENT,
                               sender_user=actor, kind=Message.Kind.NOTE, body=_clean_body(note))
    publish_conversation(conversation, "assigned", actor, note=bool(note.strip()))
    if "new_team" in changes:
        hooks.match_changed(conversation=conversation, policy_or_clock=sla_policy_or_clock)
    return conversation


def offer_withdrawn(conversation: Conversation, agent_user_id: int | None) -> None:
    publish({"type": "offer", "op": "withdrawn", "conversation_id": conversation.id, "agent_id": agent_user_id,
             "inbox_id": conversation.inbox_id}, streams=[inbox_stream(conversation.inbox_id)])
    hooks.capacity_freed()


def _write_change(conversation: Conversation, actor: AbstractBaseUser | None, kind: str, data: dict[str, Any], *,
                  priority: int | None = None, tags: tuple[list[str], list[str]] | None = None) -> None:
    """PostgreSQL, one round trip: a change of the conversation's priority or tags (the tags created on first
    use, the conversation's links added and removed), its updated_at, and the timeline event: the writes
    save(update_fields) / get_or_create + tags.add/remove, and record_event() make, without building the ORM
    statements (no signals listen to these models)."""
    now = timezone.now()
    conversation.updated_at = now
    table, events = Conversation._meta.db_table, ConversationEvent._meta.db_table
    sql, params = [], []
    if tags is not None:
        added, removed = tags
        links, tag_table = Conversation.tags.through._meta.db_table, Tag._meta.db_table
        if added:
            # A tag that exists takes no sequence number (get_or_create's gapless ids), a concurrent creation
            # of the same name is no error.
            sql.append(f"INSERT INTO {tag_table} (name) SELECT n FROM unnest(%s::text[]) AS n"
                       f" WHERE NOT EXISTS (SELECT 1 FROM {tag_table} t WHERE t.name = n)"
                       f" ON CONFLICT (name) DO NOTHING")
            sql.append(f"INSERT INTO {links} (conversation_id, tag_id) SELECT %s, t.id FROM {tag_table} t"
                       f" WHERE t.name = ANY(%s::text[]) ON CONFLICT DO NOTHING")
            params += [added, conversation.pk, added]
        if removed:
            sql.append(f"DELETE FROM {links} WHERE conversation_id = %s"
                       f" AND tag_id IN (SELECT t.id FROM {tag_table} t WHERE t.name = ANY(%s::text[]))")
            params += [conversation.pk, removed]
    if priority is not None:
        sql.append(f"UPDATE {table} SET priority = %s, updated_at = %s WHERE id = %s")
        params += [priority, now, conversation.pk]
    else:
        sql.append(f"UPDATE {table} SET updated_at = %s WHERE id = %s")
        params += [now, conversation.pk]
    sql.append(f"INSERT INTO {events} (conversation_id, kind, actor_id, data, created_at)"
               f" VALUES (%s, %s, %s, %s::jsonb, %s)")
    params += [conversation.pk, kind, actor.pk if actor else None, json.dumps(data), now]
    pgtrip.execute("; ".join(sql), params)


def _write_assignment(conversation: Conversation, actor: AbstractBaseUser | None, *, data: dict[str, Any],
                      also: tuple[str, list] | None = None, message: Message | None = None,
                      defer: bool = False) -> None:
    """One round trip of raw SQL: the conversation's assignee, team and updated_at (one UPDATE), the timeline's
    "assigned" event and the caller's `also` (routing: its queue entry's removal and its decision); the writes
    save(update_fields) and record_event() make, without building the ORM statements (no signals listen to these
    models). `defer`: sent with the events' log when realtime.batched() ends, if batching (realtime.defer); a
    message then needs its id reserved (nothing is returned)."""
    now = timezone.now()
    conversation.updated_at = now
    table, events = Conversation._meta.db_table, ConversationEvent._meta.db_table
    also_sql, also_params = (f"; {also[0]}", list(also[1])) if also is not None else ("", [])
    if message is not None:  # last: its RETURNING (when the id is not reserved) is the round trip's last result
        message_sql, message_params = _insert_returning_pk(message)
        also_sql, also_params = f"{also_sql}; {message_sql}", [*also_params, *message_params]
    sql = (f"UPDATE {table} SET assignee_id = %s, team_id = %s, updated_at = %s WHERE id = %s; "
           f"INSERT INTO {events} (conversation_id, kind, actor_id, data, created_at)"
           f" VALUES (%s, %s, %s, %s::jsonb, %s){also_sql}")
    params = [conversation.assignee_id, conversation.team_id, now, conversation.pk,
              conversation.pk, ConversationEvent.Kind.ASSIGNED, actor.pk if actor else None, json.dumps(data), now,
              *also_params]
    if defer and (message is None or message.pk is not None) and realtime.defer(sql, params):
        if message is not None:
            _inserted(message, message.pk)
        return
    results = pgtrip.execute(sql, params)
    if message is not None:
        _inserted(message, message.pk if message.pk is not None else results[-1][0][0])


@transaction.atomic
def do_change_status(*, actor: AbstractBaseUser | None, conversation: Conversation, status: str) -> Conversation:
    if status not in Conversation.Status.values:
        raise ActionError(f"Unknown status {status!r}", field="status")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = _lock(conversation)
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
    _publish_to_visitor(conversation, {"type": "status", "conversation_id": conversation.id, "status": status,
                                       "active": conversation.is_active})
    if status == Conversation.Status.OPEN and old != status and conversation.assignee_id is None \
            and not conversation.merged_into_id:
        # back to open with nobody on it: routed at once
        hooks.conversation_released(conversation=conversation, released_user_id=None, for_team=None)
    return conversation


@transaction.atomic
def do_change_priority(*, actor: AbstractBaseUser | None, conversation: Conversation, priority: int
                       ) -> Conversation:
    """Set the conversation's priority. The writes bypass the ORM: raw SQL in one round trip (_write_change)."""
    try:
        priority = int(priority)
    except (TypeError, ValueError):
        raise ActionError("Priority must be one of low, normal, high, urgent", field="priority")
    if priority not in Conversation.Priority.values:
        raise ActionError("Priority must be one of low, normal, high, urgent", field="priority")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = change_priority_locked(actor=actor, conversation=_lock(conversation), priority=priority)
    hooks.priority_changed(conversation=conversation)  # a waiting conversation moves in the queue
    return conversation


def change_priority_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, priority: int,
                            sla_policy_or_clock: bool | None = None) -> Conversation:
    """The writes and events of do_change_priority for an action that holds `conversation`'s row lock in its
    transaction and passes a valid priority (routing: a rule's). `sla_policy_or_clock`: see
    sla.actions.on_match_changed. Raw SQL, not the ORM (_write_change)."""
    old = conversation.priority
    if old == priority:
        return conversation
    conversation.priority = priority
    _write_change(conversation, actor, ConversationEvent.Kind.PRIORITY_CHANGED, {"old": old, "new": priority},
                  priority=priority)
    publish_conversation(conversation, "priority", actor)
    hooks.match_changed(conversation=conversation, policy_or_clock=sla_policy_or_clock)
    return conversation


@transaction.atomic
def do_change_subject(*, actor: AbstractBaseUser | None, conversation: Conversation, subject: str) -> Conversation:
    subject = (subject or "").strip()
    if len(subject) > 255:
        raise ActionError("Subject is longer than 255 characters", field="subject")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = _lock(conversation)
    if conversation.subject == subject:
        return conversation
    old = conversation.subject
    conversation.subject = subject
    conversation.save(update_fields=["subject", "updated_at"])
    record_event(conversation, ConversationEvent.Kind.SUBJECT_CHANGED, actor, old=old, new=subject)
    publish_conversation(conversation, "subject", actor)
    return conversation


def normalize_tag(name: str) -> str:
    return " ".join((name or "").strip().split())[:64]


@transaction.atomic
def do_set_tags(*, actor: AbstractBaseUser | None, conversation: Conversation, names: Iterable[str]
                ) -> list[str]:
    """Replace the conversation's tags with `names` (created on first use).
    The writes bypass the ORM: raw SQL in one round trip (_write_change)."""
    wanted = {normalize_tag(n) for n in names} - {""}
    if len(wanted) > MAX_TAGS:
        raise ActionError(f"At most {MAX_TAGS} tags per conversation", field="tags")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    return _set_tags_locked(actor=actor, conversation=_lock(conversation), wanted=wanted)


def _set_tags_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, wanted: set[str],
                     current: list[str] | None = None, sla_policy_or_clock: bool | None = None) -> list[str]:
    """The writes and events of do_set_tags for an action that holds `conversation`'s row lock in its
    transaction; `wanted`: normalized, at most MAX_TAGS. `current`: the conversation's tag names as read under
    that lock (else read here); `sla_policy_or_clock`: see sla.actions.on_match_changed. Raw SQL, not the ORM
    (_write_change)."""
    if current is None:
        current = [t.name for t in conversation.tags.all()]
    added = sorted(wanted - set(current))
    removed = sorted(set(current) - wanted)
    if not added and not removed:
        return sorted(current)
    _write_change(conversation, actor, ConversationEvent.Kind.TAGS_CHANGED, {"added": added, "removed": removed},
                  tags=(added, removed))
    publish_conversation(conversation, "tags", actor, tags=sorted(wanted))
    hooks.match_changed(conversation=conversation, policy_or_clock=sla_policy_or_clock)
    return sorted(wanted)


def do_add_tag(*, actor: AbstractBaseUser | None, conversation: Conversation, name: str) -> list[str]:
    names = set(conversation.tags.values_list("name", flat=True)) | {name}
    return do_set_tags(actor=actor, conversation=conversation, names=names)


def add_tag_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, name: str, current: list[str],
                    sla_policy_or_clock: bool | None = None) -> list[str]:
    """do_add_tag for an action that holds `conversation`'s row lock and read its tag names (`current`) under
    it; returns the tags after (pass them as `current` to the next call)."""
    wanted = {normalize_tag(n) for n in {*current, name}} - {""}
    if len(wanted) > MAX_TAGS:
        raise ActionError(f"At most {MAX_TAGS} tags per conversation", field="tags")
    return _set_tags_locked(actor=actor, conversation=conversation, wanted=wanted, current=current,
                            sla_policy_or_clock=sla_policy_or_clock)


@transaction.atomic
def do_merge_conversations(*, actor: AbstractBaseUser | None, source: Conversation, target: Conversation
                           ) -> Conversation:
    """Move `source`'s messages and tags into `target` (same contact) and close `source`."""
    if source.pk == target.pk:
        raise ActionError("A conversation cannot be merged into itself")
    if actor is not None:
        check_agent_can_write(actor, source)
        check_agent_can_write(actor, target)
    locked = {c.pk: c for c in Conversation.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
              .order_by("pk")}
    source, target = locked[source.pk], locked[target.pk]
    if source.contact_id != target.contact_id:
        raise ActionError("Only conversations of the same contact can be merged; merge the contacts first")
    if source.merged_into_id or target.merged_into_id:
        raise ActionError("One of these conversations was already merged")
    moved = Message.objects.filter(conversation=source).update(conversation=target)
    for tag in source.tags.all():
        target.tags.add(tag)
    target_fields = ["updated_at"]
    for fname in ("last_customer_message_at", "last_message_at", "first_agent_reply_at"):
        a, b = getattr(source, fname), getattr(target, fname)
        best = max(x for x in (a, b) if x) if (a or b) else None
        if fname == "first_agent_reply_at":
            best = min(x for x in (a, b) if x) if (a or b) else None
        if best != b:
            setattr(target, fname, best)
            target_fields.append(fname)
    if source.waiting_since and (target.waiting_since is None or source.waiting_since < target.waiting_since):
        target.waiting_since = source.waiting_since
        target_fields.append("waiting_since")
    if target.status != Conversation.Status.OPEN and source.is_active:
        target.status = Conversation.Status.OPEN
        target.solved_at = target.closed_at = None
        target_fields += ["status", "solved_at", "closed_at"]
    target.save(update_fields=target_fields)
    now = timezone.now()
    # The source leaves the engines' queues (routing: its place, or an offer holding an agent's slot, whose room
    # routing frees); an agent it was assigned to has room again.
    hooks.conversation_merged(source=source, target=target)
    if source.status == Conversation.Status.OPEN and source.assignee_id:
        hooks.capacity_freed()
    source.merged_into = target
    source.status = Conversation.Status.CLOSED
    source.closed_at = now
    source.waiting_since = None
    source.save(update_fields=["merged_into", "status", "closed_at", "waiting_since", "updated_at"])
    record_event(target, ConversationEvent.Kind.MERGED, actor, source=source.pk, moved_messages=moved)
    record_event(source, ConversationEvent.Kind.MERGED, actor, target=target.pk, moved_messages=moved)
    publish({"type": "conversation", "op": "merged", "conversation_id": target.pk, "source_id": source.pk,
             "inbox_id": target.inbox_id, "actor_id": actor.pk if actor else None},
            streams=[inbox_stream(target.inbox_id), inbox_stream(source.inbox_id)])
    return target


def agent_role_of(user: AbstractBaseUser) -> str | None:
    try:
        return user.agent.role
    except (AgentProfile.DoesNotExist, AttributeError):
        return AgentProfile.Role.ADMIN if getattr(user, "is_superuser", False) else None


# --- proactive one-to-one messages (SMS) ----------------------------------------------------


PLACEHOLDER_VAR = __import__("re").compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")


def render_template(body: str, *, contact: Contact, variables: dict) -> str:
    values = {"contact.first_name": contact.first_name, "contact.name": contact.name, "contact.email": contact.email,
              **{str(k): str(v) for k, v in (variables or {}).items()}}
    missing = [m for m in PLACEHOLDER_VAR.findall(body) if m not in values]
    if missing:
        raise ActionError(f"Missing template variables: {', '.join(sorted(set(missing)))}", field="variables")
    return PLACEHOLDER_VAR.sub(lambda m: values[m.group(1)], body)
