"""What agents write in a conversation: a public reply to the customer, delivered by a task after commit
(``do_send_agent_reply``; an agent answering an unassigned conversation takes it, within their chat limit)
and an internal note (``do_add_note``).

A reply answers the customer when it leaves, not when it is written (``reply_left``): a web chat's reply goes out
live as it is written; any other is answered when its delivery status first reaches sent, delivered or read
(``do_update_delivery_status``). A reply that fails never answered: the conversation is still waiting and its
SLA response clocks still run.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from omnichannel.errors import ActionError
from omnichannel.files import check_upload
from omnichannel.realtime import inbox_stream, publish

from .. import channels, hooks
from ..models import (
    Conversation,
    ConversationEvent,
    Message,
)
from ..payloads import widget_message
from ..tasks import deliver_outbound_message
from .capacity import check_chat_capacity
from .common import (
    MAX_ATTACHMENT_BYTES,
    actor_name,
    check_agent_can_write,
    clean_body,
    message_event,
    message_preview,
    publish_agent_card,
    publish_conversation,
    publish_to_visitor,
    record_event,
    save_attachments,
    system_line,
)


def _check_can_send(conversation: Conversation) -> None:
    """Channel rules that refuse a send up front, with a message the agent can act on (an SMS opt-out)."""
    check = channels.for_inbox(conversation.inbox).check_send
    if check is not None:
        check(conversation.inbox, conversation)


def _check_attachments(conversation: Conversation, attachments: list[UploadedFile]) -> None:
    """Files in a reply must be what the channel can carry (its spec's capability and size limit)."""
    if not attachments:
        return
    channel = channels.for_inbox(conversation.inbox)
    if not channel.can(channels.ATTACHMENTS):
        raise ActionError(f"Replies on {channel.label} inboxes cannot carry files", field="files")
    for f in attachments:
        if f.size > channel.max_attachment_bytes:
            raise ActionError(f"{f.name} is larger than {channel.max_attachment_bytes // (1024 * 1024)} MB, "
                              f"the most {channel.label} accepts", field="files")
        check_upload(f)  # the upload policy every upload follows (omnichannel/files.py)


@transaction.atomic
def do_send_agent_reply(*, actor: AbstractBaseUser, conversation: Conversation, body: str,
                        attachments: Iterable[UploadedFile] = ()) -> Message:
    """Queue a public reply to the customer; a Celery task delivers it after commit."""
    check_agent_can_write(actor, conversation)
    attachments = list(attachments)
    body = clean_body(body, allow_empty=bool(attachments))
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.merged_into_id:
        raise ActionError(f"This conversation was merged into #{conversation.merged_into_id}; reply there")
    _check_can_send(conversation)
    _check_attachments(conversation, attachments)
    live = channels.for_inbox(conversation.inbox).transport(conversation.inbox).delivers_at_write(conversation)
    now = timezone.now()
    fields = ["last_message_at", "last_message_preview", "updated_at"]
    if conversation.assignee_id is None:
        # The agent who answers an unassigned conversation takes it (within their chat limit).
        check_chat_capacity(actor, conversation)
        conversation.assignee = actor
        fields.append("assignee")
        record_event(conversation, ConversationEvent.Kind.ASSIGNED, actor, old_assignee=None, new_assignee=actor.pk,
                reason="replied")
        publish_conversation(conversation, "assigned", actor, reason="replied")
        if channels.for_inbox(conversation.inbox).can(channels.WIDGET):
            system_line(conversation, f"{actor_name(actor)} joined the chat")
            publish_agent_card(conversation, actor)
    message = Message.objects.create(
        conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
        sender_type=Message.SenderType.AGENT, sender_user=actor, body=body,
        delivery_status=Message.DeliveryStatus.SENT if live else Message.DeliveryStatus.QUEUED,
    )
    save_attachments(message, attachments)
    conversation.last_message_at = now
    conversation.last_message_preview = message_preview(body, attachments)
    if live:
        fields += _answered(conversation, message)[0]
    conversation.save(update_fields=fields)
    publish(message_event(message, preview=conversation.last_message_preview, assignee_id=conversation.assignee_id),
            streams=[inbox_stream(conversation.inbox_id)])
    publish_to_visitor(conversation, {"type": "message", "message": widget_message(message)})
    if live:
        hooks.agent_replied(conversation=conversation)
    else:
        deliver_outbound_message.delay_on_commit(message.id)
    return message


def _answered(conversation: Conversation, message: Message) -> tuple[list[str], bool]:
    """Mark `conversation` answered by `message` (in memory): the fields that changed, and whether the customer
    wrote again after the reply was written (what they wrote then is not answered by it)."""
    fields = []
    if conversation.first_agent_reply_at is None:
        conversation.first_agent_reply_at = timezone.now()
        fields.append("first_agent_reply_at")
    wrote_since = (conversation.last_customer_message_at or message.created_at) > message.created_at
    if conversation.waiting_since is not None and conversation.waiting_since <= message.created_at:
        # Waiting since the customer's first message after the reply, if any.
        conversation.waiting_since = (Message.objects.filter(
            conversation=conversation, direction=Message.Direction.INCOMING, kind=Message.Kind.MESSAGE,
            created_at__gt=message.created_at).order_by("id").values_list("created_at", flat=True).first()
            or conversation.last_customer_message_at) if wrote_since else None
        fields.append("waiting_since")
    return fields, wrote_since


def reply_left(conversation: Conversation, message: Message) -> None:
    """`message`, an agent's reply in `conversation`, has left: went out live as it was written, or its delivery
    status first reached sent, delivered or read. The customer is answered now: the conversation stops waiting
    (unless the customer wrote again after the reply was written), its first reply's time is set, and SLA
    fulfils the response targets at this instant (the agent_replied hook). Held: the conversation's row lock.
    """
    fields, wrote_since = _answered(conversation, message)
    if fields:
        conversation.save(update_fields=[*fields, "updated_at"])
    hooks.agent_replied(conversation=conversation)
    if wrote_since:  # the customer wrote again after the reply was written: their next response is due
        hooks.customer_wrote(conversation=conversation, reopened_from=None, solved_at=None)


@transaction.atomic
def do_add_note(*, actor: AbstractBaseUser, conversation: Conversation, body: str,
                attachments: Iterable[UploadedFile] = ()) -> Message:
    """An internal note: shown to agents, never sent to the customer."""
    check_agent_can_write(actor, conversation)
    attachments = list(attachments)
    body = clean_body(body, allow_empty=bool(attachments))
    for f in attachments:
        check_upload(f, max_bytes=MAX_ATTACHMENT_BYTES)  # any file a policy allows, whatever the channel
    message = Message.objects.create(
        conversation=conversation, inbox_id=conversation.inbox_id, direction=Message.Direction.OUTGOING,
        sender_type=Message.SenderType.AGENT, sender_user=actor, kind=Message.Kind.NOTE, body=body,
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    save_attachments(message, attachments)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    publish(message_event(message), streams=[inbox_stream(conversation.inbox_id)])
    return message
