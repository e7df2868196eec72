"""A customer's message posted by the company's own program: stored first, like every provider's webhook.

The incoming endpoints of the REST API (``conversations.api``) authenticate the client and check its input,
then call ``receive``: the message (with its files, saved first under ``inbound/api/``) is stored once per
(inbox, provider message id) as an ``InboundDelivery`` and committed, and then processed at once, in the
request, by the generic ``do_process_inbound_delivery`` with this channel's parser (``handle_inbound``), so
the client gets the stored message in its answer, as before. A failure after the store (a deadlock, a lost
database connection) leaves the delivery to its task and the re-drive: the client is told it was accepted
(202), and a retry with the same ``provider_message_id`` finds it. Without a ``provider_message_id`` each
request is a new message (the delivery gets a key of its own, ``~<uuid>``).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from conversations import actions, channels
from conversations.models import Conversation, InboundDelivery, Inbox, Message
from conversations.tasks import process_inbound_delivery
from omnichannel.files import check_upload

logger = logging.getLogger(__name__)

UPLOAD_DIR = "inbound/api"


@dataclass(frozen=True)
class Received:
    """What became of a posted message: the stored `message` (None while `pending`, the id of the delivery
    its task will process), and whether it had been stored before (`duplicate`)."""

    message: Message | None
    duplicate: bool = False
    pending: int | None = None


def clean_json(value: Any, field: str, *, depth: int = 0) -> Any:
    """`value` as PostgreSQL's jsonb can hold it: NUL characters dropped from strings and keys; an
    ActionError for numbers JSON cannot write (inf, nan) and for nesting deeper than 20 levels."""
    if depth > 20:
        raise actions.ActionError(f"{field} is nested too deeply", field=field)
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        raise actions.ActionError(f"{field} holds a number out of range", field=field)
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): clean_json(v, field, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, field, depth=depth + 1) for v in value]
    return value


def _check(inbox: Inbox, *, source_id: str, body: str, files: list[UploadedFile]) -> None:
    """What do_receive_inbound_message would refuse, refused before anything is stored (a 400, no delivery)."""
    if not inbox.is_active:
        raise actions.ActionError("This inbox is disabled")
    actions.check_inbound_body(body, media=bool(files))
    if not source_id:
        raise actions.ActionError("The customer's id on this channel (source_id) is required", field="source_id")
    if len(source_id) > 255:
        raise actions.ActionError("source_id is longer than 255 characters", field="source_id")
    limit = min(channels.for_inbox(inbox).max_attachment_bytes or actions.MAX_ATTACHMENT_BYTES,
                actions.MAX_ATTACHMENT_BYTES)
    for f in files:
        check_upload(f, max_bytes=limit)  # the upload policy every upload follows


def _save_files(inbox: Inbox, files: list[UploadedFile]) -> list[dict]:
    saved = []
    folder = f"{UPLOAD_DIR}/{inbox.pk}/{uuid.uuid4().hex}"
    for f in files:
        name = (f.name or "file").replace("\x00", "")[:200]
        path = default_storage.save(f"{folder}/{name}", f)
        saved.append({"path": path, "name": name, "size": f.size,
                      "content_type": (getattr(f, "content_type", None) or "application/octet-stream")[:100]})
    return saved


def _delete_files(items: list[dict]) -> None:
    for item in items:
        try:
            default_storage.delete(item["path"])
        except OSError:
            logger.warning("could not delete %s", item["path"])


def receive(*, inbox: Inbox, source_id: str, body: str = "", provider_message_id: str | None = None,
            subject: str = "", contact: dict | None = None, meta: dict | None = None,
            conversation: Conversation | None = None, files: list[UploadedFile] = ()) -> Received:
    """Store a posted customer message (once per provider id), then process it; see the module docstring.
    The caller has checked that the client may post to `inbox` (and see `conversation`)."""
    files = list(files)
    source_id = (source_id or "").replace("\x00", "").strip()
    _check(inbox, source_id=source_id, body=body, files=files)
    meta = clean_json(meta, "meta") if meta else None
    contact = clean_json(dict(contact or {}), "contact")
    provider_message_id = (str(provider_message_id).replace("\x00", "").strip()[:255] or None
                           if provider_message_id is not None else None)
    if provider_message_id:
        existing = Message.objects.filter(inbox=inbox, provider_message_id=provider_message_id).first()
        if existing is not None:
            return Received(existing, duplicate=True)
    stored = _save_files(inbox, files)
    payload = {"source_id": source_id, "body": body.replace("\x00", ""), "subject": subject.replace("\x00", ""),
               "provider_message_id": provider_message_id, "contact": contact, "meta": meta,
               "conversation_id": conversation.pk if conversation else None, "files": stored}
    key = provider_message_id or f"~{uuid.uuid4().hex}"
    delivery_id = actions.do_record_inbound_delivery(inbox=inbox, provider_message_id=key, sender=source_id,
                                                     payload=payload)
    duplicate = delivery_id is None
    if duplicate:  # the same id posted twice at once: the other request stored it; wait for its message
        _delete_files(stored)
        delivery_id = (InboundDelivery.objects.filter(inbox=inbox, provider_message_id=key)
                       .values_list("id", flat=True).first())
        if delivery_id is None:  # processed and pruned in between
            return Received(Message.objects.get(inbox=inbox, provider_message_id=provider_message_id),
                            duplicate=True)
    try:
        actions.do_process_inbound_delivery(delivery_id=delivery_id)
    except Exception:
        logger.exception("inbound API delivery %s is stored; its task will process it", delivery_id)
        try:
            process_inbound_delivery.delay(delivery_id)
        except Exception:  # the row is committed: the re-drive (beat) processes it
            logger.exception("could not enqueue inbound delivery %s", delivery_id)
        return Received(None, duplicate=duplicate, pending=delivery_id)
    row = InboundDelivery.objects.filter(pk=delivery_id).values("message_id", "error").first()
    if row is None or row["message_id"] is None:
        raise actions.ActionError((row or {}).get("error") or "The message could not be stored")
    return Received(Message.objects.select_related("sender_user").get(pk=row["message_id"]), duplicate=duplicate)


def handle_inbound(delivery: InboundDelivery) -> Message:
    """(do_process_inbound_delivery) a stored API delivery -> contact, conversation, message, attachments.
    The saved files are copied into the message's attachments and deleted once that is committed."""
    inbox, p = delivery.inbox, delivery.payload
    conversation = None
    if p.get("conversation_id"):
        conversation = Conversation.objects.filter(pk=p["conversation_id"]).first()
        if conversation is None:
            raise actions.ActionError("That conversation no longer exists", field="conversation_id")
    items = p.get("files") or []
    opened = []
    try:
        for item in items:
            try:
                f = File(default_storage.open(item["path"], "rb"), name=item["name"])
            except FileNotFoundError:
                raise actions.ActionError(f"The file {item['name']} of this message is gone") from None
            f.content_type = item.get("content_type") or "application/octet-stream"
            opened.append(f)
        contact = p.get("contact") or {}
        result = actions.do_receive_inbound_message(
            inbox=inbox, source_id=p.get("source_id") or delivery.sender, body=p.get("body", ""),
            provider_message_id=p.get("provider_message_id"), contact_name=contact.get("name", ""),
            contact_email=contact.get("email", ""), contact_phone=contact.get("phone", ""),
            subject=p.get("subject", ""), attachments=opened, meta=p.get("meta"), conversation=conversation)
    except actions.ActionError:
        _delete_files(items)  # the delivery is kept with the reason and never retried
        raise
    finally:
        for f in opened:
            f.close()
    if items:
        transaction.on_commit(lambda: _delete_files(items))
    return result.message
