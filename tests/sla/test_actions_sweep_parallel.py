"""Several sweepers at once: 300 due clocks on 100 conversations, swept from 4 threads started together.

Each thread has its own database connection (real PostgreSQL, committed rows: a transactional test), so
the claim with FOR UPDATE SKIP LOCKED, the once-only SlaEvent constraint and the escalations' own locks
(conversation row, realtime stream row, tags) all meet real concurrency. Every clock must be breached
exactly once, each escalation applied once per clock, and no sweeper may fail (deadlock, unique error).
"""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from conversations import actions
from conversations.models import Conversation, ConversationEvent
from sla.actions import do_sweep_sla
from sla.models import SlaClock, SlaEvent, SlaNotification, SlaPolicy

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSATIONS = 100
METRICS = ("first_response", "next_response", "resolution")  # 3 clocks each: 300 clocks
THREADS = 4
TARGET_MINUTES = 10


@pytest.fixture
def no_tasks():
    """Conversation actions queue routing/delivery tasks on commit; nothing consumes them here."""
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch("routing.tasks.drain_queue.delay_on_commit"), \
            mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        yield


@pytest.fixture
def frames():
    """Realtime frames sent after commit, from every thread."""
    sent: list[dict] = []
    lock = threading.Lock()

    def record(group, frame):
        with lock:
            sent.append(frame)

    def record_many(frames):
        for group, frame in frames:
            record(group, frame)

    with mock.patch("omnichannel.realtime._send", record), mock.patch("omnichannel.realtime._send_many", record_many):
        yield sent


def _due_clocks(world) -> tuple[SlaPolicy, list[Conversation]]:
    conversations = [
        actions.do_receive_inbound_message(inbox=world.inbox_a if i % 2 else world.inbox_api,
                                           source_id=f"cust{i}@example.com", body=f"Help {i}").message.conversation
        for i in range(CONVERSATIONS)
    ]  # no policy yet: no clocks
    Conversation.objects.filter(pk__in=[c.pk for c in conversations]).update(priority=Conversation.Priority.LOW)
    every_priority = {p: TARGET_MINUTES for p in ("low", "normal", "high", "urgent")}
    policy = SlaPolicy.objects.create(
        name="Parallel", warn_at_percent=50, targets={m: dict(every_priority) for m in METRICS},
        escalations={"breach": [{"action": "raise_priority"}, {"action": "add_tag", "tag": "sla-breached"},
                                {"action": "notify", "users": [world.bob.pk]}]})
    # Started long enough ago that the whole target is used up: due (and warned) in the past, and a
    # re-application (raise_priority re-applies the policy) keeps them due instead of moving them.
    now = timezone.now()
    clocks = []
    for n, conversation in enumerate(conversations):
        for k, metric in enumerate(METRICS):
            due = now - timedelta(seconds=1 + (3 * n + k) % 97)  # spread over ~1.5 min in the past
            started = due - timedelta(minutes=TARGET_MINUTES)
            clocks.append(SlaClock(conversation=conversation, policy=policy, metric=metric,
                                   target_seconds=TARGET_MINUTES * 60, started_at=started, running_since=started,
                                   due_at=due, warn_at=started + timedelta(minutes=TARGET_MINUTES / 2)))
    SlaClock.objects.bulk_create(clocks)
    Conversation.objects.filter(pk__in=[c.pk for c in conversations]).update(
        sla_due_at=now - timedelta(seconds=97), sla_warn_at=now - timedelta(minutes=5), sla_metric="first_response")
    return policy, conversations


def _sweep_in_threads(batch: int) -> tuple[list[dict], list[str]]:
    barrier = threading.Barrier(THREADS)
    results: list[dict] = [{} for _ in range(THREADS)]
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            connection.ensure_connection()  # connect before the barrier: start the sweeps truly together
            barrier.wait(timeout=30)
            results[i] = do_sweep_sla(batch=batch)
        except Exception:  # noqa: BLE001 - any failure of a sweeper is the finding
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), name=f"sweeper-{i}") for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a sweeper hung (lock wait?)"
    return results, errors


@pytest.mark.parametrize("batch", [500, 7], ids=["one-batch", "small-batches"])
def test_parallel_sweepers_fire_each_breach_once(world, no_tasks, frames, batch):
    policy, conversations = _due_clocks(world)
    assert SlaClock.objects.filter(policy=policy, breached_at=None).count() == 300
    due_before = dict(SlaClock.objects.filter(policy=policy).values_list("id", "due_at"))

    results, errors = _sweep_in_threads(batch)

    assert errors == [], "\n".join(errors)
    # One round of concurrent sweeps claims everything: nothing left for the next sweep.
    assert sum(r["breached"] for r in results) == 300, results
    # Each clock was past its warning too (never recorded): the warning is recorded with the breach, once.
    assert sum(r["warned"] for r in results) == 300, results
    assert do_sweep_sla() == {"warned": 0, "breached": 0}

    # Every clock: breached once, one "breached" event and one "warned" event.
    clocks = list(SlaClock.objects.filter(policy=policy))
    assert len(clocks) == 300 and all(c.breached_at is not None for c in clocks)
    # The escalations re-apply the policy; an overdue clock keeps the time it fell due (console "… over").
    moved = {c.id: (due_before[c.id], c.due_at) for c in clocks if c.due_at != due_before[c.id]}
    assert moved == {}, f"{len(moved)} due times moved, e.g. {next(iter(moved.values()), None)}"
    kinds = Counter(SlaEvent.objects.filter(clock__policy=policy).values_list("kind", flat=True))
    assert kinds == {"breached": 300, "warned": 300}, kinds
    per_clock = Counter(SlaEvent.objects.filter(clock__policy=policy, kind="breached")
                        .values_list("clock_id", flat=True))
    assert set(per_clock) == {c.id for c in clocks} and set(per_clock.values()) == {1}
    # Each event's "at" is the sweeping transaction's now(), after the due time.
    for event in SlaEvent.objects.filter(clock__policy=policy).select_related("clock"):
        assert event.data["late_seconds"] >= 0 and event.at >= event.clock.started_at

    # Escalations exactly once per clock: 3 raises (low → urgent), one notification per clock, the tag.
    for conversation in Conversation.objects.filter(pk__in=[c.pk for c in conversations]).prefetch_related("tags"):
        raises = list(ConversationEvent.objects.filter(conversation=conversation,
                                                       kind=ConversationEvent.Kind.PRIORITY_CHANGED)
                      .order_by("id").values_list("data", flat=True))
        assert [(d["old"], d["new"]) for d in raises] == [(0, 1), (1, 2), (2, 3)], (conversation.pk, raises)
        assert conversation.priority == Conversation.Priority.URGENT
        assert [t.name for t in conversation.tags.all()] == ["sla-breached"]
        texts = sorted(SlaNotification.objects.filter(conversation=conversation, user=world.bob)
                       .values_list("text", flat=True))
        assert texts == sorted(f"SLA {m.replace('_', ' ')} breached on #{conversation.pk}" for m in METRICS)
        assert conversation.sla_due_at is not None  # still running (breached), summary kept
    assert SlaNotification.objects.count() == 300

    # The consoles were told: at least one "breached" frame per conversation, covering its 3 metrics.
    metrics_told: dict[int, set] = {}
    for frame in frames:
        if frame.get("op") == "sla" and frame.get("sla_event") == "breached":
            metrics_told.setdefault(frame["conversation_id"], set()).update(frame["metrics"])
    assert metrics_told == {c.pk: set(METRICS) for c in conversations}
