"""The queue serves strictly in its stated order (VIP level and priority, then SLA urgency, then arrival),
whatever the timing of the frees: slots freed in parallel, drains running side by side (issue 14)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents.models import AgentProfile, Team
from conversations import actions
from conversations.models import ChannelKind, Conversation, Inbox
from routing.actions import do_drain_queue, do_route_conversation
from routing.actions.queue import in_queue_order
from routing.models import QueueEntry, RoutingDecision

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_background_tasks(no_background_tasks):
    yield


@pytest.fixture
def chat_desk(make_agent):
    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    team = Team.objects.create(name="Support")
    team.inboxes.set([inbox])
    agents = [make_agent(f"a{i}", teams=[team]) for i in range(3)]
    AgentProfile.objects.update(max_concurrent=1)
    return inbox, agents


def _arrive(inbox, n: int, *, priority: int | None = None) -> Conversation:
    conv = actions.do_receive_inbound_message(inbox=inbox, source_id=f"visitor-{n}", body=f"hello {n}").message.conversation
    if priority is not None:
        actions.do_change_priority(actor=None, conversation=conv, priority=priority)
    do_route_conversation(conversation_id=conv.id)
    conv.refresh_from_db()
    return conv


def _served(ids) -> list[int]:
    """The queued conversations in the order they were given to an agent (decision ids grow with time)."""
    return list(RoutingDecision.objects.filter(conversation_id__in=ids, outcome="assigned").order_by("id")
                .values_list("conversation_id", flat=True))


def _free_in_parallel(inbox) -> None:
    """Close every conversation agents hold at once, each in its own thread, and drain after each close (as the
    capacity_freed handler's task would), all side by side."""
    held = list(Conversation.objects.filter(inbox=inbox, assignee__isnull=False, status="open"))
    barrier = threading.Barrier(len(held))
    errors = []

    def close(conv):
        try:
            barrier.wait()
            actions.do_change_status(actor=None, conversation=conv, status="solved")
            do_drain_queue()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=close, args=(c,)) for c in held]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_parallel_frees_serve_the_queue_in_its_order(chat_desk):
    inbox, _agents = chat_desk
    for n in range(3):  # every agent busy
        assert _arrive(inbox, n).assignee_id is not None
    waiting = []
    for n in range(3, 27):  # 24 wait; every fifth urgent, every seventh high
        priority = 3 if n % 5 == 0 else 2 if n % 7 == 0 else None
        waiting.append(_arrive(inbox, n, priority=priority).id)
    expected = list(in_queue_order(QueueEntry.objects.filter(state="waiting")).values_list("conversation_id",
                                                                                            flat=True))
    assert sorted(expected) == sorted(waiting)
    urgent = {c for c in waiting if Conversation.objects.get(pk=c).priority == 3}
    assert set(expected[:len(urgent)]) == urgent  # the urgent ones head the queue, in arrival order
    for _round in range(8):
        _free_in_parallel(inbox)
    served = _served(waiting)
    assert len(served) == 24
    assert served == expected


def test_sla_urgency_ranks_breached_then_warned_then_arrival(chat_desk):
    inbox, _agents = chat_desk
    for n in range(3):
        _arrive(inbox, n)
    waiting = [_arrive(inbox, n).id for n in range(3, 9)]
    now = timezone.now()
    # Clocks that started a few milliseconds apart in another order than arrival do not reorder the rest.
    for i, cid in enumerate(waiting):
        Conversation.objects.filter(pk=cid).update(sla_due_at=now + timedelta(hours=1, milliseconds=-i),
                                                   sla_warn_at=now + timedelta(minutes=45))
    Conversation.objects.filter(pk=waiting[4]).update(sla_due_at=now - timedelta(minutes=1))  # breached
    Conversation.objects.filter(pk=waiting[2]).update(sla_warn_at=now - timedelta(minutes=1))  # past its warning
    order = list(in_queue_order(QueueEntry.objects.filter(state="waiting")).values_list("conversation_id",
                                                                                         flat=True))
    assert order == [waiting[4], waiting[2], waiting[0], waiting[1], waiting[3], waiting[5]]
    from routing.actions import queue_position

    assert queue_position(Conversation.objects.get(pk=waiting[2]))[0] == 2
    for _round in range(2):
        _free_in_parallel(inbox)
    assert _served(waiting) == order


def test_a_slot_freed_during_a_pass_goes_to_the_head_not_to_the_entry_being_decided(chat_desk, monkeypatch):
    from routing.actions import drain

    inbox, agents = chat_desk
    busy = [_arrive(inbox, n) for n in range(3)]
    waiting = [_arrive(inbox, n).id for n in range(3, 8)]
    real = drain.do_route_conversation

    def route(*, conversation_id, **kwargs):
        if conversation_id == waiting[1]:  # the head was just refused (everyone busy): now a slot frees
            freer = threading.Thread(target=lambda: (
                actions.do_change_status(actor=None, conversation=busy[0], status="solved"), connection.close()))
            freer.start()
            freer.join()
        return real(conversation_id=conversation_id, **kwargs)

    monkeypatch.setattr(drain, "do_route_conversation", route)
    do_drain_queue()  # the pass that was under way when the slot freed
    assert _served(waiting) == []
    monkeypatch.setattr(drain, "do_route_conversation", real)
    do_drain_queue()  # the pass the free started (its task): from the head
    assert _served(waiting) == [waiting[0]]
