"""Celery entry points. Tasks take ids, refetch and call actions; sending and receiving are idempotent.

Every channel's inbound deliveries and outbound messages go through the generic tasks here (the channel
seam, conversations/channels.py): a provider's webhook stores a verified delivery and enqueues
``process_inbound_delivery``; a reply is sent by ``deliver_outbound_message`` through the channel's transport.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from omnichannel.errors import TransportError

from . import channels
from .models import InboundDelivery, Message

logger = logging.getLogger(__name__)


def _backoff(attempt: int) -> int:
    return min(5 * 2 ** max(attempt - 1, 0), 600)


# The lease of a send: a claimed message (sending) belongs to its attempt until then. Longer than any send can
# take: the task is killed (time_limit, counted from its start, before the claim) 30 s before the lease ends, so
# an attempt the re-drive gives up on can no longer complete.
SEND_LEASE = timedelta(minutes=5)
# A queued message with a task on its way (a retry scheduled with its countdown, or a task the re-drive enqueued)
# is left alone this long after the task should have run.
TASK_GRACE = timedelta(minutes=2)
FIRST_TASK_GRACE = timedelta(seconds=60)  # a new reply's first task (no lease yet)


@shared_task(bind=True, acks_late=True, max_retries=None,
             time_limit=int(SEND_LEASE.total_seconds()) - 30)
def deliver_outbound_message(self, message_id: int) -> str:
    """Send one outbound message through its inbox's transport.

    Idempotent: the queued -> sending compare-and-set means a redelivered or duplicated task
    never sends the same message twice concurrently, and a sent message is never re-sent. The claim takes a
    lease (``delivery_lease_until``, SEND_LEASE) that the re-drive respects, and a retry keeps one until it is
    due: a second attempt never starts while the first may still complete.
    """
    from .actions import do_update_delivery_status  # a cycle: conversations.actions imports this module

    claimed = Message.objects.filter(id=message_id, delivery_status=Message.DeliveryStatus.QUEUED).update(
        delivery_status=Message.DeliveryStatus.SENDING, delivery_attempts=F("delivery_attempts") + 1,
        delivery_lease_until=Now() + SEND_LEASE,
    )
    if not claimed:
        return "skipped"
    message = Message.objects.select_related("conversation__contact", "inbox", "sender_user").get(id=message_id)
    transport = channels.for_inbox(message.inbox).transport(message.inbox)
    try:
        # An earlier attempt may have reached the provider before its worker died (the re-drive put the message
        # back): where the provider can tell (find_sent), store what it already has instead of sending twice.
        provider_id = transport.find_sent(message) if message.delivery_attempts > 1 else None
        if provider_id:
            Message.objects.filter(id=message_id).update(failure_reason="")
            do_update_delivery_status(message=message, status=Message.DeliveryStatus.SENT,
                                      provider_message_id=provider_id)
            return "already sent"
        provider_id = transport.send(message)
    except TransportError as exc:
        if exc.permanent or message.delivery_attempts >= settings.OUTBOUND_WEBHOOK_MAX_ATTEMPTS:
            do_update_delivery_status(message=message, status=Message.DeliveryStatus.FAILED, reason=exc.message)
            return "failed"
        countdown = _backoff(message.delivery_attempts)
        # Back to queued, leased to the retry until it is due (and a grace): the re-drive leaves it to the retry.
        Message.objects.filter(id=message_id, delivery_status=Message.DeliveryStatus.SENDING).update(
            delivery_status=Message.DeliveryStatus.QUEUED, failure_reason=exc.message[:500],
            delivery_lease_until=Now() + timedelta(seconds=countdown) + TASK_GRACE)
        logger.info("message %s: temporary failure (%s), retrying", message_id, exc.message)
        raise self.retry(countdown=countdown, exc=exc)
    Message.objects.filter(id=message_id).update(failure_reason="")
    do_update_delivery_status(message=message, status=Message.DeliveryStatus.SENT, provider_message_id=provider_id)
    return "sent"


@shared_task
def redrive_outbound_messages() -> int:
    """Re-enqueue outbound messages whose task was lost (broker restart, killed worker).

    Only messages no task may still be working on: `sending` ones whose send's lease expired (the worker died
    mid-send; at-least-once from here, find_sent asks the provider first and receivers dedupe on the delivery id),
    and `queued` ones whose retry or re-driven task is overdue (their lease expired) or whose first task never
    ran (a minute after they were written). A message's age alone never re-drives it: a backlog's send in flight
    is left to finish. Each one taken is leased to the task enqueued for it (TASK_GRACE).
    """
    now = timezone.now()
    due = (
        Q(delivery_lease_until__lt=Now())  # leases are in the database's time, as they were taken
        | Q(delivery_lease_until__isnull=True, delivery_status=Message.DeliveryStatus.QUEUED,
            created_at__lt=now - FIRST_TASK_GRACE)
        # claimed before leases existed (the migration): the former 5 minutes
        | Q(delivery_lease_until__isnull=True, delivery_status=Message.DeliveryStatus.SENDING,
            created_at__lt=now - SEND_LEASE)
    )
    with transaction.atomic():
        ids = list(Message.objects.select_for_update(skip_locked=True)
                   .filter(due, delivery_status__in=[Message.DeliveryStatus.QUEUED, Message.DeliveryStatus.SENDING],
                           kind=Message.Kind.MESSAGE)
                   .order_by("id").values_list("id", flat=True)[:500])
        Message.objects.filter(id__in=ids).update(delivery_status=Message.DeliveryStatus.QUEUED,
                                                  delivery_lease_until=Now() + TASK_GRACE)
    for message_id in ids:
        deliver_outbound_message.delay(message_id)
    return len(ids)


INBOUND_REDRIVE_AFTER = timedelta(seconds=60)  # an unprocessed delivery older than this lost its task (or retries)
INBOUND_MAX_ATTEMPTS = 10  # then it stays unprocessed, with its error, in the admin (Inbound deliveries)
INBOUND_KEEP_PROCESSED = timedelta(days=7)  # then the raw payload goes; a late retry dedupes on the stored message


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=INBOUND_MAX_ATTEMPTS)
def process_inbound_delivery(self, delivery_id: int) -> int:
    """A stored inbound delivery of any channel -> contact, conversation, message, through the channel's
    ``receive`` (conversations.actions.do_process_inbound_delivery).

    Idempotent: the row is locked and marked processed in the transaction that stores the message, so a
    redelivered task (acks_late: a killed worker's task runs again) or a re-driven one stores nothing twice.
    """
    from .actions import do_process_inbound_delivery  # a cycle: conversations.actions imports this module

    try:
        return do_process_inbound_delivery(delivery_id=delivery_id)
    except Exception as exc:
        raise self.retry(countdown=min(2 ** self.request.retries, 60), exc=exc)


@shared_task
def redrive_inbound_deliveries() -> int:
    """(beat) Re-enqueue inbound deliveries of every channel still unprocessed after INBOUND_REDRIVE_AFTER: a
    lost task, a broker restart, a worker killed before it acknowledged. Processing twice is harmless."""
    ids = list(InboundDelivery.objects.filter(processed_at__isnull=True,
                                              received_at__lt=timezone.now() - INBOUND_REDRIVE_AFTER,
                                              attempts__lt=INBOUND_MAX_ATTEMPTS)
               .order_by("id").values_list("id", flat=True)[:500])
    for delivery_id in ids:
        process_inbound_delivery.delay(delivery_id)
    return len(ids)


@shared_task
def prune_inbound_deliveries() -> int:
    """(beat) Drop processed deliveries after INBOUND_KEEP_PROCESSED (the message has the content; a retry of the
    same provider id arriving later is stored as a delivery again and found already stored as a message)."""
    deleted, _ = InboundDelivery.objects.filter(processed_at__lt=timezone.now() - INBOUND_KEEP_PROCESSED).delete()
    return deleted
