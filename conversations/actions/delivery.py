"""A message's delivery status, typing and read receipts: ``do_update_delivery_status`` (forward only, what
every provider's status callback feeds), ``do_notify_typing`` (live, never stored) and ``do_mark_read``.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from omnichannel.errors import ActionError
from omnichannel.realtime import inbox_stream, publish, publish_ephemeral

from ..models import (
    Conversation,
    ConversationEvent,
    Message,
)
from ..payloads import agent_card
from .common import message_event, publish_to_visitor, record_event, visitor_streams
from .replies import reply_left

LEFT = (Message.DeliveryStatus.SENT, Message.DeliveryStatus.DELIVERED, Message.DeliveryStatus.READ)
NOT_LEFT = (Message.DeliveryStatus.QUEUED, Message.DeliveryStatus.SENDING)


def _is_agent_reply(message: Message) -> bool:
    return (message.direction == Message.Direction.OUTGOING and message.kind == Message.Kind.MESSAGE
            and message.sender_type == Message.SenderType.AGENT)


@transaction.atomic
def do_update_delivery_status(*, message: Message, status: str, reason: str = "",
                              provider_message_id: str | None = None) -> bool:
    """Move a message's delivery status forward only; `failed` is terminal. Returns whether it changed.

    An agent's reply that first reaches sent, delivered or read has left: it answers the customer now
    (``reply_left``: waiting state, first reply, SLA response targets), with the conversation's row locked
    before the message's (the lock order). Later updates, and failures, lock only the message: a failed reply
    never answered anything."""
    conversation = None
    if status in LEFT and message.delivery_status in NOT_LEFT and _is_agent_reply(message):
        # Only the first move out of queued/sending answers (re-checked under the lock: statuses only move on).
        conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "contact")
                        .get(pk=message.conversation_id))
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
    if conversation is not None and current in NOT_LEFT:
        reply_left(conversation, message)
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
                          groups=visitor_streams(conversation))


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
        publish_to_visitor(conversation, {"type": "read", "by": "agent", "up_to": ids[-1]})
    return len(ids)
