"""Merges: two contacts into one (``do_merge_contacts``: identities, conversations, segments and details move
to the target) and two conversations of one contact into one (``do_merge_conversations``: messages and tags
move, the source is closed).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from omnichannel.errors import ActionError
from omnichannel.realtime import inbox_stream, publish

from .. import hooks
from ..models import (
    Contact,
    ContactIdentity,
    ContactSegment,
    Conversation,
    ConversationEvent,
    Message,
)
from .common import check_agent_can_write, record_event
from .segments import do_apply_segment_rules


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
