"""A customer's message arriving, the one inbound path every channel calls (``do_receive_inbound_message``,
``InboundResult``), with its one-round-trip fast path for a known customer (``_lock_known_customer``,
``_write_inbound``: raw SQL in prepared statements); the checks a webhook applies before storing
(``check_inbound_body``); and the stored inbound deliveries of providers' webhooks
(``do_record_inbound_delivery``, ``do_process_inbound_delivery``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from omnichannel import pgtrip, realtime
from omnichannel.db import from_row
from omnichannel.errors import ActionError, clean_text
from omnichannel.realtime import inbox_stream, publish

from .. import channels, hooks, queries
from ..models import (
    Contact,
    ContactIdentity,
    Conversation,
    ConversationEvent,
    InboundDelivery,
    Inbox,
    Message,
)
from ..payloads import widget_message
from .common import (
    clean_body,
    message_event,
    message_preview,
    publish_to_visitor,
    record_event,
    save_attachments,
    visitor_streams,
)
from .contacts import get_or_create_contact, identity_scope


@dataclass
class InboundResult:
    message: Message
    created: bool  # False when the provider's message id was already stored (a retried delivery)
    new_conversation: bool = False


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
    body = clean_body(body, allow_empty=bool(attachments) or media_pending)
    # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate: whatever a channel passes through is stripped
    # of them (clean_text), never a 500.
    source_id = clean_text(source_id or "").strip()
    contact_name, contact_email, contact_phone, subject = (
        clean_text(value or "") for value in (contact_name, contact_email, contact_phone, subject))
    if not source_id:
        raise ActionError("The customer's id on this channel (source_id) is required", field="source_id")
    if len(source_id) > 255:
        raise ActionError("source_id is longer than 255 characters", field="source_id")
    if provider_message_id is not None:
        provider_message_id = clean_text(str(provider_message_id)).strip()[:255] or None
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
    saved = save_attachments(message, attachments)
    fields = ["last_customer_message_at", "last_message_at", "last_message_preview", "updated_at"]
    conversation.last_customer_message_at = now
    conversation.last_message_at = now
    conversation.last_message_preview = message_preview(body, attachments)
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
              for stream in visitor_streams(conversation, inbox)),
        ])
    else:
        conversation.save(update_fields=fields)
        if reopened_from and not new_conversation:
            hooks.status_changed(conversation=conversation, old=reopened_from, new=Conversation.Status.OPEN)
        publish(inbox_event, streams=[inbox_stream(inbox.id)])
        publish_to_visitor(conversation, {"type": "message", "message": widget_message(message, saved)}, inbox)
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
    # Sent through omnichannel.pgtrip: prepared once per connection, in one pipeline.
    results = pgtrip.execute(*queries.known_customer_sql(kind, identity_scope(inbox), source_id, inbox.pk,
                                                         live=live))
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
    conversation.updated_at = now
    if "updated_at" not in fields:
        fields = [*fields, "updated_at"]
    realtime.publish_many(events, before=queries.inbound_write_sql(message, conversation, fields))
    message._state.adding = False
    message._state.db = connection.alias


def check_inbound_body(body: str | None, *, media: bool = False) -> str:
    """The checks do_receive_inbound_message applies to a body, for a webhook that answers before storing it."""
    return clean_body(body, allow_empty=media)


def do_record_inbound_delivery(*, inbox: Inbox, provider_message_id: str, sender: str, payload: dict) -> int | None:
    """Store a verified inbound webhook once per (inbox, provider message id), in one statement.

    Returns the new row's id, or None when that id was already stored (a retried or concurrent delivery:
    the statement waits for the other insert and then does nothing). Outside a transaction the row is
    committed on return, so the caller may acknowledge the provider.
    """
    values = {"inbox_id": inbox.pk, "provider_message_id": provider_message_id[:255], "sender": sender[:255],
              "payload": payload, "received_at": timezone.now(), "attempts": 0, "error": ""}
    with connection.cursor() as cursor:
        cursor.execute(*queries.record_delivery_sql(values))
        row = cursor.fetchone()
    return row[0] if row else None


def _cannot_receive(delivery: InboundDelivery) -> None:
    """The stored delivery of an inbox whose channel has no inbound parser: kept, marked processed with the
    reason (a retry could not succeed), for an admin to see in Inbound deliveries."""
    raise ActionError(f"{channels.for_inbox(delivery.inbox).label} inboxes cannot receive this delivery; "
                      "it was stored for another kind of inbox")


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
            if rows and handle is None:
                handle = _cannot_receive  # e.g. the inbox's kind was changed while deliveries were pending
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
