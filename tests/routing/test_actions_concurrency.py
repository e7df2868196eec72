"""200 conversations arriving at once across 10 agents with a limit of 3, routed by parallel workers."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Count

from agents.models import AgentProfile, Team
from conversations.actions import do_change_status, do_receive_inbound_message
from conversations.models import ChannelKind, Conversation, Inbox
from routing.actions import do_drain_queue, do_route_conversation
from routing.models import QueueEntry

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_arrivals_never_exceed_capacity_and_the_queue_drains_in_order(make_agent):
    inbox = Inbox.objects.create(name="chat", kind=ChannelKind.WEBCHAT)
    team = Team.objects.create(name="Chat team")
    team.inboxes.set([inbox])
    for i in range(10):
        make_agent(f"agent{i}", teams=[team])
    AgentProfile.objects.update(max_concurrent=3)
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch("routing.tasks.drain_queue.delay_on_commit"):
        ids = [do_receive_inbound_message(inbox=inbox, source_id=f"v{i}", body="hi").message.conversation_id
               for i in range(200)]
        work = list(ids)
        lock = threading.Lock()
        errors = []

        def worker():
            try:
                while True:
                    with lock:
                        if not work:
                            return
                        conversation_id = work.pop()  # newest first: the worst order for fairness
                    do_route_conversation(conversation_id=conversation_id)
            except Exception as exc:  # pragma: no cover
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        loads = dict(Conversation.objects.filter(assignee__isnull=False).values_list("assignee")
                     .annotate(n=Count("id")))
        assert len(loads) == 10 and max(loads.values()) == 3
        assert sum(loads.values()) == 30
        waiting = list(QueueEntry.objects.filter(state="waiting").order_by("-priority", "enqueued_at", "id")
                       .values_list("conversation_id", flat=True))
        assert len(waiting) == 170
        assert waiting == sorted(waiting), "the queue is in arrival order"
        # Agents close conversations one at a time: the head of the queue gets each freed slot.
        for n, expected in enumerate(waiting[:20], start=1):
            busy = Conversation.objects.filter(assignee__isnull=False, status="open").order_by("?").first()
            do_change_status(actor=None, conversation=busy, status="closed")
            do_drain_queue()
            assert Conversation.objects.get(pk=expected).assignee_id is not None
            assert QueueEntry.objects.filter(state="waiting").count() == 170 - n
        loads = dict(Conversation.objects.filter(assignee__isnull=False, status="open").values_list("assignee")
                     .annotate(n=Count("id")))
        assert max(loads.values()) <= 3
