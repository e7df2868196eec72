"""SLA sweep: the claim over 1,000,000 clocks (100,000 running) vs a primary-key lookup; firing lateness, 5 s sweep.

Data (``bench/sla_probe.py seed``, its own database ``omnichannel_bench_sla`` and the bench Redis db, seeded once in
set-based SQL, ~1.5 min): 100,000 open conversations in 8 inboxes, 1,000,000 ``sla_slaclock`` rows of which
100,000 are running and not breached, due 7 to 37 days ahead; the rest fulfilled (5 % late) or cancelled;
1,000,000 SLA events; one policy without escalations. Every run first puts the data back to the seed
(``sla_probe reset``: a few thousand rows, then VACUUM ANALYZE).

**Sweep batch** (``sla_probe batch``, one process, persistent connection): 500 running clocks are made due,
then interleaved in the same rounds: the baselines (one due clock by primary key: raw SELECT and ORM
``get(pk=…)``), the sweep's claim as one raw statement (``… WHERE state = 'running' AND breached_at IS NULL
AND due_at <= now() ORDER BY due_at LIMIT n FOR UPDATE SKIP LOCKED``, 200 and 500 rows) and ``do_sweep_sla``'s
own claim phase (the real function up to its first write, where it is aborted), each timed inside an
open transaction rolled back afterwards. Then server-side execution times (EXPLAIN ANALYZE), EXPLAIN
(ANALYZE, BUFFERS) of every statement ``do_sweep_sla`` claims with (captured from a call) to show the
partial indexes, and the real ``do_sweep_sla()`` over the 500 due clocks (rolled back) with its statements.
The claim is measured again after the lateness runs, without VACUUM (the breached clocks' dead entries are
then at the head of ``sla_clock_due``).

**Lateness A** (production shape): a real ``celery -A omnichannel beat`` (the project's schedule: sla-sweep
every 5 s, plus the other periodic tasks), ``celery -A omnichannel worker --concurrency 2`` and the sweep's
own worker (``--concurrency 1`` on ``CELERY_SLA_QUEUE``; as docker-compose runs them; BENCH_SLA_SWEEP_WORKER=0
sends the sweep to the shared worker instead, the shape before it had its own queue) against the bench
database and Redis. After the first sweep, 3,000 of the 100,000
running clocks get due times spread uniformly over the next 60 s (warning 10 s before). Afterwards, per clock:
lateness = breached SlaEvent.at - due_at (``at`` is the sweep transaction's start); visible lateness = when
a poller (every 0.2 s) first sees the committed event - due_at (what a console sees); missed = due but no
breached event one interval + 1 s after the last due time (and still none two intervals later); doubled =
more than one breached event, or breached_at different from the event's time; early = event before due;
false = events of clocks that were not due. Baseline in the same run: the lateness of an ideal sweeper with
the same beat ticks and zero work (next beat send after each due time). Also: beat period, sweep task run
times (worker log), and how long a publish to an inbox stream waits for the row lock the sweep holds
(probe every 0.1 s: ``SELECT … FROM omnichannel_realtimestream … FOR NO KEY UPDATE``, like ``publish()``).

**Lateness B** (two sweepers): two processes (``sla_probe sweeper``) call ``do_sweep_sla(batch=50)`` at the
same multiples of 5 s of the wall clock, so they compete for the same due rows; 1,500 clocks over 30 s.
Same checks; plus which sweeper fired what and any errors (deadlocks).

Targets (issue): claim p99 within 10x the same-run primary-key lookup p99; lateness p99 <= interval + 1 s
(6 s); zero missed, zero doubled. Knobs: BENCH_SLA_DATABASE_URL
[the bench database's name + ``_sla``], BENCH_SLA_REDIS_URL [BENCH_REDIS_URL;
flushed], BENCH_SLA_CLOCKS [3000], BENCH_SLA_WINDOW s [60], BENCH_SLA_CLOCKS_B [1500], BENCH_SLA_WINDOW_B s
[30] (0 skips B), BENCH_SLA_BATCH_B [50], BENCH_SLA_SWEEPS [3] (real do_sweep_sla calls timed),
BENCH_SLA_SWEEP_WORKER [1] (0: no sweep worker, the sweep shares the worker's pool),
BENCH_SLA_MAX_LOAD (wait, up to BENCH_SLA_LOAD_WAIT s [600], until the 1-minute load average is below it).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

from bench import harness
from bench.harness import PY, fmt, load_avg, summary
from bench.sla_probe import TARGET_RATIO, test_sets

LEAD_S = 3.0  # first due time after scheduling
POLL_S = 0.2
PROBE_S = 0.1

TASK_LINE = re.compile(r"^\[(?P<ts>[\d-]+ [\d:,]+): [A-Z]+/[\w-]+\] Task (?P<task>[\w.]+)\[[^\]]+\] "
                       r"(?:succeeded in (?P<secs>[\d.e-]+)s: (?P<result>.*)|(?P<failed>raised unexpected: .*))$",
                       re.M)
BEAT_LINE = re.compile(r"^\[(?P<ts>[\d-]+ [\d:,]+): INFO/MainProcess\] Scheduler: Sending due task sla-sweep", re.M)


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


class Bench:
    def __init__(self, out_dir: Path, options) -> None:
        self.out_dir = out_dir
        self.options = options
        self.clocks_a = harness.env_int("BENCH_SLA_CLOCKS", 3000)
        self.window_a = harness.env_float("BENCH_SLA_WINDOW", 60)
        self.clocks_b = harness.env_int("BENCH_SLA_CLOCKS_B", 1500)
        self.window_b = harness.env_float("BENCH_SLA_WINDOW_B", 30)
        self.batch_b = harness.env_int("BENCH_SLA_BATCH_B", 50)
        self.sweeps = harness.env_int("BENCH_SLA_SWEEPS", 3)
        self.sweep_worker = (os.getenv("BENCH_SLA_SWEEP_WORKER") or "1") != "0"
        self.stack = harness.Stack(
            "sla", database=harness.database_url("sla", "BENCH_SLA_DATABASE_URL"),
            redis=harness.redis_url("BENCH_SLA_REDIS_URL"))
        # CELERY_SLA_QUEUE: the sweep's own queue and worker, as docker-compose runs them
        self.sla_queue = self.stack.queue + "-sla"
        self.stack.extra_env["CELERY_SLA_QUEUE"] = self.sla_queue if self.sweep_worker else ""
        from omnichannel.celery import app

        self.interval = float(app.conf.beat_schedule["sla-sweep"]["schedule"])
        self.pg = None
        self.meta: dict = {}

    def prepare(self) -> dict:
        import psycopg

        self.stack.prepare_database(reseed=getattr(self.options, "reseed", False))
        t = time.monotonic()
        seeded = json.loads(self.stack.python("-m", "bench.sla_probe", "seed").strip().splitlines()[-1])
        print(f"== seed: {'written in %.0f s' % (time.monotonic() - t) if seeded['seeded'] else 'reused'}",
              flush=True)
        reset = json.loads(self.stack.python("-m", "bench.sla_probe", "reset").strip().splitlines()[-1])
        print(f"== reset to the seed in {reset['seconds']} s ({reset['clocks_reset']} clocks, "
              f"{reset['events_deleted']} events{', times rebased' if reset['rebased'] else ''}); running clocks "
              f"due within an hour: {reset['due_within_1h']}", flush=True)
        self.meta = reset
        self.pg = psycopg.connect(self.stack.db_url, autocommit=True)
        return reset

    # --- batch -----------------------------------------------------------------------------

    def batch(self, *, quick: bool, label: str) -> dict:
        out = self.out_dir / f"sla_batch_{label}.json"
        iterations = self.options.iterations if not quick else max(self.options.iterations // 2, 50)
        args = ["-m", "bench.sla_probe", "batch", "--iterations", str(iterations), "--warmup",
                str(self.options.warmup), "--sweeps", str(self.sweeps), "--label", label, "--out", str(out)]
        if quick:
            args.append("--quick")
        self.stack.python(*args, echo=True)
        return json.loads(out.read_text())

    # --- processes -----------------------------------------------------------------------------

    def start_celery(self) -> tuple[list[subprocess.Popen], subprocess.Popen, list[Path], Path]:
        """The worker (and, as docker-compose runs it, the sweep's own worker), then beat."""
        self.stack.flush_redis()
        worker_log, beat_log = self.out_dir / "sla_worker.log", self.out_dir / "sla_beat.log"
        sweep_log = self.out_dir / "sla_sweep_worker.log"
        schedule = self.out_dir / "sla-celerybeat-schedule"
        beat_log.write_text("")
        workers = [(worker_log, self.stack.celery_worker(worker_log, concurrency=2))]
        if self.sweep_worker:
            workers.append((sweep_log, self.stack.celery_worker(sweep_log, concurrency=1, queue=self.sla_queue,
                                                                name="sweep")))
        beat = self.stack.spawn([PY, "-m", "celery", "-A", "omnichannel", "beat", "-l", "info", "-s", str(schedule),
                                 "--logfile", str(beat_log)])
        return [p for _, p in workers], beat, [log for log, _ in workers], beat_log

    # --- lateness -----------------------------------------------------------------------------

    def max_event_id(self) -> int:
        return self.pg.execute("SELECT COALESCE(max(id), 0) FROM sla_slaevent").fetchone()[0]

    def schedule(self, ids: list[int], window: float, seed: int) -> float:
        """Due times spread uniformly over [now + LEAD_S, now + LEAD_S + window]; returns the DB's now()."""
        rng = random.Random(seed)
        offsets = [LEAD_S + rng.uniform(0, window) for _ in ids]
        row = self.pg.execute("""
            WITH s AS (SELECT * FROM unnest(%s::bigint[], %s::float8[]) AS s(id, o))
            UPDATE sla_slaclock c
               SET due_at = now() + s.o * interval '1 second',
                   warn_at = greatest(now() + %s * interval '1 second', now() + (s.o - 10) * interval '1 second'),
                   warned_at = NULL, breached_at = NULL, running_since = now()
              FROM s WHERE c.id = s.id AND c.state = 'running'
            RETURNING extract(epoch FROM now())
        """, [ids, offsets, LEAD_S]).fetchall()
        if len(row) != len(ids):
            raise SystemExit(f"scheduled {len(row)} of {len(ids)} clocks")
        return float(row[0][0])

    def observe(self, ids: list[int], t0: float, window: float, after_id: int, label: str) -> dict:
        """Poll committed breach events and probe the inbox stream locks until the window is over."""
        import psycopg

        seen: dict[int, float] = {}
        snapshots: dict[str, int] = {}
        stop = threading.Event()
        probe: list[tuple[float, float]] = []
        streams = [f"inbox.{i}" for i in self.meta["inbox_ids"]]

        def lock_probe():
            rng = random.Random(1)
            with psycopg.connect(self.stack.db_url, autocommit=True) as conn:
                while not stop.is_set():
                    stream = rng.choice(streams)
                    start = time.perf_counter()
                    with conn.transaction(force_rollback=True):
                        conn.execute("SELECT last_seq FROM omnichannel_realtimestream WHERE name = %s "
                                     "FOR NO KEY UPDATE", [stream]).fetchall()
                    probe.append((time.time(), (time.perf_counter() - start) * 1e3))
                    stop.wait(PROBE_S)

        thread = threading.Thread(target=lock_probe, daemon=True)
        thread.start()
        last_due = t0 + LEAD_S + window
        deadline_missed = last_due + self.interval + 1.0
        deadline_end = last_due + 3 * self.interval
        idset = set(ids)
        try:
            while True:
                now, found = self.pg.execute(
                    "SELECT extract(epoch FROM clock_timestamp()), "
                    "array(SELECT clock_id FROM sla_slaevent WHERE id > %s AND kind = 'breached')",
                    [after_id]).fetchone()
                now = float(now)
                for clock_id in found:
                    seen.setdefault(clock_id, now)
                if "missed" not in snapshots and now >= deadline_missed:
                    snapshots["missed"] = len(idset - set(seen))
                if now >= deadline_end or ("missed" in snapshots and idset <= set(seen)):
                    snapshots["never"] = len(idset - set(seen))
                    break
                time.sleep(POLL_S)
        finally:
            stop.set()
            thread.join(5)
        return {"seen": seen, "snapshots": snapshots, "probe": probe, "last_due": last_due,
                "deadline_missed": deadline_missed}

    def analyse(self, ids: list[int], after_id: int, obs: dict, ticks: list[float]) -> dict:
        rows = self.pg.execute("""
            SELECT c.id, extract(epoch FROM c.due_at), extract(epoch FROM c.warn_at),
                   extract(epoch FROM c.breached_at), extract(epoch FROM c.warned_at),
                   count(e.id) FILTER (WHERE e.kind = 'breached'),
                   extract(epoch FROM min(e.at) FILTER (WHERE e.kind = 'breached')),
                   extract(epoch FROM max(e.at) FILTER (WHERE e.kind = 'breached')),
                   count(e.id) FILTER (WHERE e.kind = 'warned'),
                   extract(epoch FROM min(e.at) FILTER (WHERE e.kind = 'warned'))
              FROM sla_slaclock c
              LEFT JOIN sla_slaevent e ON e.clock_id = c.id AND e.id > %s AND e.kind IN ('breached', 'warned')
             WHERE c.id = ANY(%s)
             GROUP BY c.id
        """, [after_id, ids]).fetchall()
        false_fires = self.pg.execute(
            "SELECT count(*) FROM sla_slaevent WHERE id > %s AND kind IN ('breached', 'warned') "
            "AND NOT (clock_id = ANY(%s))", [after_id, ids]).fetchone()[0]
        late, visible, warn_late, ideal = [], [], [], []
        doubled = doubled_warn = mismatch = early = early_warn = missing_warn = 0
        ticks = sorted(ticks)
        for (cid, due, warn, breached_at, _warned_at, n_b, at_b, at_b_max, n_w, at_w) in rows:
            due, warn = float(due), float(warn)
            if n_b:
                late.append(float(at_b) - due)
                early += float(at_b) < due
                mismatch += breached_at is None or abs(float(breached_at) - float(at_b_max)) > 1e-3
                doubled += n_b > 1
            if cid in obs["seen"]:
                visible.append(obs["seen"][cid] - due)
            if n_w:
                warn_late.append(float(at_w) - warn)
                early_warn += float(at_w) < warn
                doubled_warn += n_w > 1
            else:
                missing_warn += 1  # includes a clock breached before its warning fired
            nxt = next((t for t in ticks if t >= due), None)
            if nxt is not None:
                ideal.append(nxt - due)
        probe_all = [ms for _, ms in obs["probe"]]
        return {
            "clocks": len(ids), "fired": len(late), "lateness_s": summary(late), "visible_s": summary(visible),
            "ideal_s": summary(ideal), "warn_lateness_s": summary(warn_late), "missed": obs["snapshots"].get("missed"),
            "never_fired": obs["snapshots"].get("never"), "doubled": doubled, "breached_at_mismatch": mismatch,
            "early": early, "false_fires": false_fires, "warn_doubled": doubled_warn, "warn_early": early_warn,
            "warn_missed": missing_warn, "publish_lock_wait_ms": summary(probe_all),
            "publish_lock_waits_over_100ms": sum(ms > 100 for ms in probe_all),
        }

    def phase_celery(self) -> dict:
        ids = test_sets(self.meta)["lateness"][: self.clocks_a]
        workers, beat, worker_logs, beat_log = self.start_celery()
        try:
            deadline = time.monotonic() + 30
            while not any("sla.tasks.sweep_sla" in log.read_text(errors="replace") for log in worker_logs):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no sla sweep in the worker logs after 30 s; see {worker_logs}, {beat_log}")
                if beat.poll() is not None:
                    raise SystemExit(f"celery beat exited with {beat.returncode}; see {beat_log}")
                time.sleep(0.2)
            after_id = self.max_event_id()
            print(f"\n== lateness A: celery beat + worker (prefork, 2 processes)"
                  f"{' + the sweep worker (1 process, CELERY_SLA_QUEUE)' if self.sweep_worker else ''} running, sweep every "
                  f"{self.interval:g} s; {len(ids):,} of the 100,000 running clocks due over the next "
                  f"{self.window_a:g} s (load average {load_avg()})", flush=True)
            t0 = self.schedule(ids, self.window_a, seed=11)
            obs = self.observe(ids, t0, self.window_a, after_id, "A")
        finally:
            self.stack.stop(beat)
            for worker in workers:
                self.stack.stop(worker)
        beat_text = beat_log.read_text(errors="replace")
        worker_text = "\n".join(log.read_text(errors="replace") for log in worker_logs)
        ticks = [_ts(m["ts"]) for m in BEAT_LINE.finditer(beat_text)]
        result = self.analyse(ids, after_id, obs, ticks)
        sweeps, failures = [], []
        for m in TASK_LINE.finditer(worker_text):
            if m["task"] != "sla.tasks.sweep_sla":
                continue
            if m["failed"]:
                failures.append(m["failed"][:300])
                continue
            fired = re.search(r"'breached': (\d+)", m["result"])
            warned = re.search(r"'warned': (\d+)", m["result"])
            sweeps.append({"end": _ts(m["ts"]), "secs": float(m["secs"]),
                           "breached": int(fired[1]) if fired else 0, "warned": int(warned[1]) if warned else 0})
        in_window = [t for t in ticks if t0 <= t <= obs["last_due"] + self.interval]
        periods = [b - a for a, b in zip(in_window, in_window[1:], strict=False)]
        busy = [s for s in sweeps if s["breached"] or s["warned"]]
        spans = [(s["end"] - s["secs"], s["end"]) for s in sweeps]
        overlapping = sum(any(a0 < e1 and b0 < a1 for (b0, e1) in spans[:i]) for i, (a0, a1) in enumerate(spans))
        result.update({
            "mode": "celery beat + worker" + (" + sweep worker" if self.sweep_worker else ""),
            "beat_period_s": summary(periods),
            "sweep_task_s": summary([s["secs"] for s in busy]), "sweep_task_idle_s": summary(
                [s["secs"] for s in sweeps if not (s["breached"] or s["warned"])]),
            "clocks_per_sweep_max": max((s["breached"] + s["warned"] for s in busy), default=0),
            "sweeps_overlapping": overlapping, "sweeps": len(sweeps),
            "sweep_failures": failures, "error_lines": [line for line in worker_text.splitlines()
                                                        if "ERROR" in line or "CRITICAL" in line][:20],
        })
        return result

    def phase_two_sweepers(self) -> dict:
        ids = test_sets(self.meta)["concurrent"][: self.clocks_b]
        until = time.time() + 2 + LEAD_S + self.window_b + 3 * self.interval
        outs, procs = [], []
        for k in range(2):
            out = self.out_dir / f"sla_sweeper_{k}.json"
            outs.append(out)
            procs.append(self.stack.spawn([PY, "-m", "bench.sla_probe", "sweeper", "--interval", str(self.interval),
                                     "--batch", str(self.batch_b), "--until", str(until), "--out", str(out)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        try:
            for p in procs:
                line = p.stdout.readline()
                if line.strip() != "ready":
                    raise SystemExit(f"sweeper did not start: {line!r} {p.stderr.read()[-2000:]}")
            after_id = self.max_event_id()
            print(f"\n== lateness B: two sweeper processes, do_sweep_sla(batch={self.batch_b}) at the same "
                  f"multiples of {self.interval:g} s; {len(ids):,} clocks due over the next {self.window_b:g} s "
                  f"(load average {load_avg()})", flush=True)
            t0 = self.schedule(ids, self.window_b, seed=12)
            obs = self.observe(ids, t0, self.window_b, after_id, "B")
            for p in procs:
                p.wait(max(until - time.time(), 0) + 60)
        finally:
            for p in procs:
                self.stack.stop(p)
        data = [json.loads(o.read_text()) for o in outs if o.exists()]
        # The ideal sweeper sweeps at every multiple of the interval (the real ones skip ticks while busy).
        first = min((t["tick"] for d in data for t in d["ticks"]), default=t0)
        ticks = [first + k * self.interval for k in range(int((until - first) / self.interval) + 2)]
        result = self.analyse(ids, after_id, obs, ticks)
        per = []
        both = 0
        by_tick: dict[float, list[int]] = {}
        for d in data:
            fired = [t for t in d["ticks"] if t["fired"] and t["fired"]["breached"]]
            per.append({"breached": sum(t["fired"]["breached"] for t in d["ticks"] if t["fired"]),
                        "warned": sum(t["fired"]["warned"] for t in d["ticks"] if t["fired"]),
                        "errors": [t["error"] for t in d["ticks"] if t["error"]],
                        "sweep_s": summary([t["seconds"] for t in fired])})
            for t in fired:
                by_tick.setdefault(t["tick"], []).append(t["fired"]["breached"])
        both = sum(len(v) == 2 for v in by_tick.values())
        result.update({"mode": f"two sweeper processes, batch {self.batch_b}", "sweepers": per,
                       "ticks_both_fired": both, "ticks_with_breaches": len(by_tick)})
        return result


def print_lateness(name: str, r: dict, interval: float) -> bool:
    target = interval + 1.0
    print(f"\n{name}: {r['mode']}; {r['clocks']:,} clocks due, {r['fired']:,} fired")
    header = ("measure", "n", "p50 s", "p95 s", "p99 s", "max s", "min s", "target")
    rows = []

    def row(label, s, tgt=""):
        rows.append((label, str(s.get("n", 0)), fmt(s.get("p50")), fmt(s.get("p95")), fmt(s.get("p99")),
                     fmt(s.get("max")), fmt(s.get("min")), tgt))

    ok_at = r["lateness_s"].get("p99", 1e9) <= target
    ok_vis = r["visible_s"].get("p99", 1e9) <= target
    row("ideal: next sweep tick after due, zero work (baseline)", r["ideal_s"], "baseline")
    row("lateness: breached event.at - due_at", r["lateness_s"],
        f"p99 <= {target:g} s: " + ("met" if ok_at else "MISSED"))
    row("visible: committed event first seen - due_at", r["visible_s"],
        f"p99 <= {target:g} s: " + ("met" if ok_vis else "MISSED"))
    row("warning: warned event.at - warn_at", r["warn_lateness_s"], "")
    harness.print_rows(header, rows, left=(0, 7))
    ok_counts = not r["missed"] and not r["doubled"] and not r["breached_at_mismatch"] and not r["never_fired"]
    print(f"   missed (no breach {interval + 1:g} s after the last due time): {r['missed']}; never fired: "
          f"{r['never_fired']}; doubled: {r['doubled']}; breached_at != event time: {r['breached_at_mismatch']}; "
          f"fired before due: {r['early']}; fired for clocks not due: {r['false_fires']}  -> "
          + ("met" if ok_counts else "MISSED"))
    print(f"   warnings: missed {r['warn_missed']}, doubled {r['warn_doubled']}, before warn_at {r['warn_early']}")
    p = r["publish_lock_wait_ms"]
    if p.get("n"):
        print(f"   publish() row-lock wait on an inbox stream (probe every {PROBE_S:g} s): p50 {fmt(p['p50'], 3)} ms, "
              f"p99 {fmt(p['p99'], 1)} ms, max {fmt(p['max'], 1)} ms; {r['publish_lock_waits_over_100ms']} of {p['n']} "
              "waits > 100 ms")
    if "beat_period_s" in r:
        b, t, i = r["beat_period_s"], r["sweep_task_s"], r["sweep_task_idle_s"]
        print(f"   beat period p50 {fmt(b.get('p50'), 3)} s, max {fmt(b.get('max'), 3)} s; sweep task run time with "
              f"work p50 {fmt(t.get('p50'), 3)} s, max {fmt(t.get('max'), 3)} s over {t.get('n', 0)} sweeps (up to "
              f"{r['clocks_per_sweep_max']} transitions per sweep); idle sweep p50 {fmt(i.get('p50'), 4)} s; "
              f"failed sweeps {len(r['sweep_failures'])}; sweeps that started while another ran: "
              f"{r['sweeps_overlapping']} of {r['sweeps']}")
        for line in r["sweep_failures"][:3] + r["error_lines"][:3]:
            print(f"     ! {line[:200]}")
    if "sweepers" in r:
        for k, s in enumerate(r["sweepers"]):
            sw = s["sweep_s"]
            print(f"   sweeper {k}: breached {s['breached']}, warned {s['warned']}, sweep with work p50 "
                  f"{fmt(sw.get('p50'), 3)} s max {fmt(sw.get('max'), 3)} s, errors {len(s['errors'])}")
            for e in s["errors"][:3]:
                print(f"     ! {e[:200]}")
        print(f"   ticks where both sweepers fired breaches: {r['ticks_both_fired']} of {r['ticks_with_breaches']}")
    return ok_at and ok_counts


def run(options) -> dict:
    out_dir = harness.results_dir()
    bench = Bench(out_dir, options)
    bench.prepare()
    harness.wait_for_quiet("BENCH_SLA_MAX_LOAD", "BENCH_SLA_LOAD_WAIT")
    parts: list[dict] = []
    t_start = time.monotonic()
    try:
        print(f"\nSweep batch vs primary-key lookup: {options.iterations} interleaved rounds after "
              f"{options.warmup} warm-up (load average {load_avg()})", flush=True)
        batch = bench.batch(quick=False, label="clean")
        parts.append({"part": "batch", **batch})
        harness.save_text("explain_sla.txt", "\n\n".join(f"-- {k}\n{v}" for k, v in batch["plans"].items()))
        for key, text in batch["plans"].items():
            if key.startswith("do_sweep_sla breach") and "due_at <=" in text:
                print(f"\n   EXPLAIN (ANALYZE, BUFFERS) of {key[:100]} (all plans in explain_sla.txt):")
                print("\n".join("     " + line for line in harness.compact_plan(text).splitlines()))

        lat_a = bench.phase_celery()
        ok_a = print_lateness("Lateness A", lat_a, bench.interval)
        parts.append({"part": "lateness_celery", **lat_a})
        lat_b, ok_b = None, True
        if bench.window_b > 0 and bench.clocks_b > 0:
            lat_b = bench.phase_two_sweepers()
            ok_b = print_lateness("Lateness B", lat_b, bench.interval)
            parts.append({"part": "lateness_two_sweepers", **lat_b})

        print(f"\nSweep claim again after the lateness runs, no VACUUM (load average {load_avg()})", flush=True)
        after = bench.batch(quick=True, label="after")
        parts.append({"part": "batch_after", **after})
        harness.save_text("explain_sla_after.txt", "\n\n".join(f"-- {k}\n{v}" for k, v in after["plans"].items()))
    finally:
        bench.stack.stop_all()
        if bench.pg is not None:
            bench.pg.close()

    def claim(b: dict, label: str) -> dict:
        by = {c["case"]: c for c in b["cases"]}
        c = by["claim.sweep.200"]
        base = by[c["baseline"]]
        ratio = c["p99"] / base["p99"]
        return harness.target(f"claim (do_sweep_sla, batch 200) p99 <= {TARGET_RATIO:g}x PK lookup p99, {label}",
                              ratio <= TARGET_RATIO, f"p99 {c['p99']:.2f} ms ({ratio:.1f}x)",
                              f"{c['baseline']} p99 {base['p99']:.2f} ms")

    def lateness(r: dict, label: str, ok: bool) -> dict:
        return harness.target(
            f"lateness p99 <= {bench.interval + 1:g} s, 0 missed, 0 doubled ({label})", ok,
            f"p99 {fmt(r['lateness_s'].get('p99'), 2)} s; missed {r['missed']}, doubled {r['doubled']}",
            f"ideal sweeper p99 {fmt(r['ideal_s'].get('p99'), 2)} s")

    targets = [claim(batch, "clean"), claim(after, "after the lateness runs"), lateness(lat_a, "A: celery", ok_a)]
    if lat_b is not None:
        targets.append(lateness(lat_b, "B: two sweepers", ok_b))
    print(f"\nMeasured in {time.monotonic() - t_start:.0f} s; do_sweep_sla's claim uses sla_clock_due: "
          f"{batch['claim_uses_sla_clock_due']}")
    for r in parts:
        r.pop("plans", None)
    return {"targets": targets, "parts": parts}
