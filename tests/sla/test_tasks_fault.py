"""Fault test: the worker and beat are SIGKILLed and restarted while clocks are due.

Real `celery -A omnichannel worker` and `celery -A omnichannel beat` subprocesses run against this test's
database (committed rows: a transactional test), the Redis broker and a queue of their own; beat keeps its
schedule file in tmp_path (beat runs sla.tasks.sweep_sla every 5 s, omnichannel/celery.py).

Clocks come due one a second over ~20 s; a few seconds in, both processes are killed (SIGKILL, whole
process group), kept down 8 s, and started again. Every transition must then have fired exactly once,
clocks due while the processes ran no later than one sweep interval (+ margin), and clocks due during the
outage no later than the outage (kill → both back up) + one interval (+ margin).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations import actions
from sla.models import SlaClock, SlaEvent, SlaNotification, SlaPolicy

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
SWEEP_INTERVAL = 5.0  # omnichannel/celery.py: "sla-sweep" every 5 s
MARGIN = 2.0
OUTAGE = 8.0  # how long both processes stay down
KILL_AFTER = 10.0  # seconds after the clocks are set up (beat's first tick comes 5 s after it starts)
BREACH_CLOCKS = 20  # due one a second, from 1 s after setup
WARN_CLOCKS = 8  # warning only (due in an hour), warn times every 2.5 s
AFTER_CLOCKS = 4  # set up once both are back: 2 breaches, 2 warnings due 1-4 s later
TEST_BUDGET = 58.0  # the whole test, processes' start-up included


def child_database_url() -> str:
    """The test database on the suite's server (TCP or the embedded socket) as a child process's DATABASE_URL."""
    return urlparse(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]).geturl()


class CeleryProcess:
    """A celery subprocess in its own process group, logging to a file; readiness read from the log."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path, ready: str):
        self.name, self.args, self.env, self.log_dir, self.ready = name, args, env, log_dir, re.compile(ready)
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.log_path: Path | None = None

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.log_dir / f"{self.name}-{self.runs}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([CELERY, "-A", "omnichannel", *self.args], cwd=self.log_dir, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def is_ready(self) -> bool:
        return bool(self.log_path and self.ready.search(self.log_path.read_text(errors="replace")))

    def kill(self) -> None:
        """SIGKILL the process and its children (the prefork pool): no shutdown, no schedule sync."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(10)

    def logs(self) -> str:
        return "".join(f"\n----- {p.name} -----\n" + p.read_text(errors="replace")[-4000:]
                       for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))


def wait_until(predicate, deadline: float, what: str) -> float:
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wall(mono: float, ref_mono: float, ref_wall: datetime) -> datetime:
    """A time.monotonic() reading as wall-clock time (the database's now() runs on the same host)."""
    return ref_wall + timedelta(seconds=mono - ref_mono)


def _clock(conversation, policy, ref: datetime, *, due_in: float | None = None, warn_in: float | None = None):
    """A running 1-hour clock, due (or warned, then due an hour later) `due_in`/`warn_in` seconds after ref."""
    due = ref + timedelta(seconds=due_in) if due_in is not None else ref + timedelta(hours=1)
    begun = due - timedelta(hours=1)
    return SlaClock(conversation=conversation, policy=policy, metric="first_response", target_seconds=3600,
                    started_at=begun, running_since=begun, due_at=due,
                    warn_at=ref + timedelta(seconds=warn_in) if warn_in is not None else None)


def test_worker_and_beat_killed_and_restarted_while_clocks_are_due(world, tmp_path):
    started = time.monotonic()
    deadline = started + TEST_BUDGET
    queue = f"omni-sla-fault-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
           "DATABASE_URL": child_database_url(),
           "REDIS_URL": settings.REDIS_URL, "CELERY_QUEUE": queue,
           "CHANNEL_LAYER_PREFIX": os.environ.get("CHANNEL_LAYER_PREFIX", "omnitest"), "PYTHONUNBUFFERED": "1"}
    worker = CeleryProcess("worker", ["worker", "--loglevel=INFO", "--concurrency=1", "-Q", queue,
                                      "-n", f"{queue}@%h", "--without-gossip", "--without-mingle",
                                      "--without-heartbeat"], env, tmp_path, r"\bready\.")
    beat = CeleryProcess("beat", ["beat", "--loglevel=INFO", "-s", str(tmp_path / "celerybeat-schedule"),
                                  "--pidfile="], env, tmp_path, r"beat: Starting")

    # Data first (no policy yet, so no clocks): conversations and who is notified.
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
        conversations = [actions.do_receive_inbound_message(
            inbox=world.inbox_a, source_id=f"fault{i}@example.com", body=f"Help {i}").message.conversation
            for i in range(BREACH_CLOCKS + WARN_CLOCKS + AFTER_CLOCKS)]
    policy = SlaPolicy.objects.create(
        name="Fault", targets={"first_response": {p: 60 for p in ("low", "normal", "high", "urgent")}},
        escalations={"warning": [{"action": "notify", "users": [world.bob.pk]}],
                     "breach": [{"action": "notify", "users": [world.bob.pk]}]})
    expected = {"breached": BREACH_CLOCKS + AFTER_CLOCKS // 2, "warned": WARN_CLOCKS + AFTER_CLOCKS // 2}

    def fired() -> Counter:
        return Counter(SlaEvent.objects.filter(clock__policy=policy, kind__in=expected)
                       .values_list("kind", flat=True))

    try:
        worker.start()
        beat.start()
        wait_until(lambda: worker.is_ready() and beat.is_ready(), started + 25, "worker and beat to start")

        # Clocks due from now on: breaches one a second, warnings every 2.5 s (their breach an hour away).
        ref_mono, ref_wall = time.monotonic(), timezone.now()
        convs = iter(conversations)
        clocks = SlaClock.objects.bulk_create(
            [_clock(next(convs), policy, ref_wall, due_in=1 + i) for i in range(BREACH_CLOCKS)]
            + [_clock(next(convs), policy, ref_wall, warn_in=1 + 2.5 * i) for i in range(WARN_CLOCKS)])

        # The outage: both SIGKILLed mid-window, down OUTAGE seconds, started again.
        time.sleep(max(0.0, ref_mono + KILL_AFTER - time.monotonic()))
        killed = time.monotonic()
        worker.kill()
        beat.kill()
        time.sleep(max(0.0, killed + OUTAGE - time.monotonic()))
        restarted = time.monotonic()
        worker.start()
        beat.start()
        wait_until(worker.is_ready, deadline - 14, "the worker to restart")
        wait_until(beat.is_ready, deadline - 14, "beat to restart")
        back = time.monotonic()

        # A few more clocks due once both are back: the ordinary bound applies again.
        after_ref = wall(back, ref_mono, ref_wall)
        clocks += SlaClock.objects.bulk_create(
            [_clock(next(convs), policy, after_ref, due_in=1 + i) for i in range(AFTER_CLOCKS // 2)]
            + [_clock(next(convs), policy, after_ref, warn_in=3 + i) for i in range(AFTER_CLOCKS // 2)])

        # Wait for every transition (at most one interval + margin after it is due or the processes are back).
        wait_until(lambda: fired() == expected, min(back + 4 + SWEEP_INTERVAL + MARGIN + 0.5, deadline),
                   "every transition to fire") if fired() != expected else None
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))  # would anything fire twice?
        assert worker.proc.poll() is None and beat.proc.poll() is None, worker.logs() + beat.logs()
    except AssertionError as exc:
        raise AssertionError(f"{exc}; fired {dict(fired())} of {expected}\n{worker.logs()}{beat.logs()}") from None
    finally:
        worker.kill()
        beat.kill()
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL).delete(queue)
        except Exception:  # noqa: S110 - leftover broker key, flushed with the session anyway
            pass

    kill_at, back_at = wall(killed, ref_mono, ref_wall), wall(back, ref_mono, ref_wall)
    outage = (back_at - kill_at).total_seconds()
    logs = worker.logs() + beat.logs()

    # Exactly once: one event of each transition per clock, one notification per transition.
    events = list(SlaEvent.objects.filter(clock__policy=policy, kind__in=["warned", "breached"])
                  .select_related("clock").order_by("at"))
    kinds = Counter((e.clock_id, e.kind) for e in events)
    assert {k: n for k, n in kinds.items() if n != 1} == {}, kinds
    assert sorted(cid for cid, kind in kinds if kind == "breached") == sorted(
        c.pk for c in clocks if c.warn_at is None), (kinds, logs)
    assert sorted(cid for cid, kind in kinds if kind == "warned") == sorted(
        c.pk for c in clocks if c.warn_at is not None), (kinds, logs)
    assert SlaNotification.objects.filter(user=world.bob).count() == len(clocks)

    # Lateness: the event's time (the sweep's database now()) minus the due/warn time.
    rows = []
    for e in events:
        due = e.clock.due_at if e.kind == "breached" else e.clock.warn_at
        late = (e.at - due).total_seconds()
        if kill_at <= due <= back_at:
            phase = "outage"
        elif due <= kill_at - timedelta(seconds=SWEEP_INTERVAL + MARGIN) or due > back_at:
            phase = "running"
        else:
            phase = "just before kill"  # the sweep that would have caught it may have been killed
        rows.append((phase, e.kind, (due - ref_wall).total_seconds(), late))
    report = [f"outage (kill -> both back) {outage:.1f} s = down {restarted - killed:.1f} s + restart "
              f"{back - restarted:.1f} s; whole test {time.monotonic() - started:.1f} s"]
    report += [f"  {phase:16} {kind:8} due +{due_s:5.1f} s  late {late:5.2f} s" for phase, kind, due_s, late in rows]
    text = "\n".join(report)
    print(text)

    back_s = (back_at - ref_wall).total_seconds()
    for phase, _kind, due_s, late in rows:
        assert late >= 0, text
        if phase == "running":
            assert late <= SWEEP_INTERVAL + MARGIN, (text, logs)
        elif phase == "outage":
            assert late <= outage + SWEEP_INTERVAL + MARGIN, (text, logs)
        # Anything the kill made late fired within one interval of both processes being back.
        assert due_s + late <= max(due_s, back_s) + SWEEP_INTERVAL + MARGIN, (text, logs)
    phases = Counter(phase for phase, *_ in rows)
    assert phases["outage"] >= 5 and phases["running"] >= 5, text  # the scenario really happened
    assert time.monotonic() - started < 60, text
