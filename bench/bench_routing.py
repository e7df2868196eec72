"""Routing: decision latency with 50 rules and 500 agents vs one agent-row lookup; routed/s with 2 workers.

Data (``bench/routing_data.py``, its own database ``omnichannel_bench_routing`` and the bench Redis db, seeded
once): 500 agents (60 % online) in 20 teams over 10 inboxes, limits 3 live chats / 10 asynchronous,
every agent already working a few conversations; 50 active rules, most arrivals matching only one of
the last ten; 20,000 returning contacts with history and segments.

**Decision latency** (``bench/routing_probe.py latency``, one process, one connection): freshly
received conversations are routed one at a time by ``do_route_conversation`` (the decision and the
assignment in one transaction, as the Celery task runs it). Interleaved in the same rounds, the
baselines: ``AgentProfile.objects.get(pk=…)`` and the same row by a raw SELECT. Also: SQL statements
per decision, the costliest statement shapes (EXPLAIN in bench/results/), a cProfile, and the cost of
opening a PostgreSQL connection, which every Celery task pays on top while CONN_MAX_AGE is 0.

**Throughput** (2 Celery prefork processes: ``celery -A omnichannel worker -l info --concurrency 2``, as
docker-compose runs it, on the bench queue): open-model generators (2 processes) receive new
conversations through ``do_receive_inbound_message`` at a constant rate per step (default 50, 100,
200/s for 20 s each), so ``route_conversation`` runs in the workers. Per step: arrivals achieved,
routed/s, arrival -> decision latency (RoutingDecision.created_at minus Conversation.created_at, and
minus the intended arrival time), backlog when arrivals stop, lost/failed tasks, task run time from the
worker log, CPU by process group. Capacity: an SQL check every 0.5 s during the step and one after it;
no agent may have more open conversations (plus pending offers) of a channel class than its limit.
Nothing closes conversations during a step, so loads only grow and the check after the step is
exhaustive for that step. Each step starts from the seeded state (``routing_data reset``). Baseline
at each rate, same workers: an empty Celery task (``bench/routing_noop.py``), enqueue -> start.
Then a "pre-received" step (default 200/s for 8 s): the conversations are received before the step and
only ``route_conversation.delay`` happens at the arrival times, which shows the workers' routing capacity
without the receiving competing for the 2 cores. Lock waits of the bench database's backends are sampled with the capacity check.

Targets (issue): decision p99 < 20 ms; no capacity violation at 200 arrivals/s. Knobs:
BENCH_ROUTING_DECISIONS [1000], BENCH_ROUTING_RATES [50,100,200], BENCH_ROUTING_DURATION s [20],
BENCH_ROUTING_NOOP_DURATION s [6], BENCH_ROUTING_CONCURRENCY [2], BENCH_ROUTING_GENERATORS [2],
BENCH_ROUTING_PRERECEIVED_RATES [200], BENCH_ROUTING_PRERECEIVED_DURATION s [8],
BENCH_ROUTING_LATENCY_BUDGET s [90: the timed decisions stop there on a slow machine],
BENCH_ROUTING_DRAIN_TIMEOUT s [15], BENCH_ROUTING_MAX_LOAD [off; e.g. 1.5: wait for a quiet machine first],
BENCH_ROUTING_MAX_WAIT s [600], BENCH_ROUTING_DATABASE_URL
[the bench database's name + ``_routing``], BENCH_ROUTING_REDIS_URL [BENCH_REDIS_URL; flushed before each
step].
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from bench import harness
from bench.harness import PY, ROOT, busy_pct, children, cpu_seconds, fmt, load_avg, pct, print_rows, proc_stat

TARGET_P99_MS = 20.0
TARGET_RATE = 200.0

CAPACITY_SQL = """
WITH loads AS (
    SELECT p.id AS agent, i.kind = 'webchat' AS chat, count(*) AS n
      FROM conversations_conversation c
      JOIN conversations_inbox i ON i.id = c.inbox_id
      JOIN routing_agentprofile p ON p.user_id = c.assignee_id
     WHERE c.status = 'open'
     GROUP BY 1, 2
    UNION ALL
    SELECT q.offered_to_id, i.kind = 'webchat', count(*)
      FROM routing_queueentry q JOIN conversations_inbox i ON i.id = q.inbox_id
     WHERE q.state = 'offered' AND q.offered_to_id IS NOT NULL
     GROUP BY 1, 2
), per_agent AS (
    SELECT agent, chat, sum(n) AS n FROM loads GROUP BY 1, 2
)
SELECT count(*) FILTER (WHERE (a.chat AND a.n > p.max_concurrent) OR (NOT a.chat AND a.n > p.max_concurrent_async)),
       coalesce(max(a.n) FILTER (WHERE a.chat), 0), coalesce(max(a.n) FILTER (WHERE NOT a.chat), 0),
       count(*) FILTER (WHERE (a.chat AND a.n = p.max_concurrent) OR (NOT a.chat AND a.n = p.max_concurrent_async)),
       coalesce(json_agg(json_build_object('agent', a.agent, 'chat', a.chat, 'n', a.n, 'chat_limit', p.max_concurrent,
                                           'async_limit', p.max_concurrent_async))
                FILTER (WHERE (a.chat AND a.n > p.max_concurrent) OR (NOT a.chat AND a.n > p.max_concurrent_async)),
                '[]')
  FROM per_agent a JOIN routing_agentprofile p ON p.id = a.agent
"""
FREE_SLOTS_SQL = """
SELECT coalesce(sum(greatest(p.max_concurrent - coalesce(l.chat, 0), 0)), 0),
       coalesce(sum(greatest(p.max_concurrent_async - coalesce(l.async, 0), 0)), 0)
  FROM routing_agentprofile p
  LEFT JOIN (SELECT c.assignee_id, count(*) FILTER (WHERE i.kind = 'webchat') AS chat,
                    count(*) FILTER (WHERE i.kind <> 'webchat') AS async
               FROM conversations_conversation c JOIN conversations_inbox i ON i.id = c.inbox_id
              WHERE c.status = 'open' GROUP BY 1) l ON l.assignee_id = p.user_id
 WHERE p.status = 'online'
"""
# Backends of this database waiting for a lock, by what they wait on and what they run.
LOCK_WAITS_SQL = """
SELECT l.locktype, coalesce(l.relation::regclass::text, ''), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90),
       count(*)
  FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
 WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
 GROUP BY 1, 2, 3
"""
ACTIVE_SQL = """
SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE wait_event_type = 'Lock')
  FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
BUSY_SQL = """
SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')
"""
UNDECIDED_SQL = """
SELECT count(*) FROM conversations_conversation c
 WHERE c.id > %s AND NOT EXISTS (SELECT 1 FROM routing_routingdecision d WHERE d.conversation_id = c.id)
"""
DECISIONS_SQL = """
SELECT c.id, extract(epoch FROM c.created_at)::float8, extract(epoch FROM d.first_at)::float8, d.outcome, d.n
  FROM conversations_conversation c
  LEFT JOIN LATERAL (SELECT min(created_at) AS first_at, count(*) AS n, (array_agg(outcome ORDER BY id))[1] AS outcome
                       FROM routing_routingdecision WHERE conversation_id = c.id) d ON true
 WHERE c.id = ANY(%s)
"""
TASK_LINE = re.compile(r"Task (?P<task>[\w.]+)\[[^\]]+\] (?:succeeded in (?P<secs>[\d.e-]+)s: '?(?P<result>[^'\n]*)"
                       r"|(?P<failed>raised unexpected: .*))")


def _postgres_cpu() -> float:
    """CPU seconds of PostgreSQL: live processes plus the backends that have exited (the postmaster's
    cutime/cstime), so that the per-task connections of the workers are counted too."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        try:
            parent = (Path("/proc") / fields[1] / "comm").read_text().strip()
        except OSError:
            parent = ""
        if parent not in ("postgres", "postmaster"):  # the postmaster: add its reaped children
            total += (int(fields[13]) + int(fields[14])) / tick
    return total


class Bench:
    def __init__(self, out_dir: Path, options) -> None:
        self.out_dir = out_dir
        self.options = options
        self.stack = harness.Stack(
            "routing", database=harness.database_url("routing", "BENCH_ROUTING_DATABASE_URL"),
            redis=harness.redis_url("BENCH_ROUTING_REDIS_URL"))
        self.decisions = int(os.getenv("BENCH_ROUTING_DECISIONS") or 1000)
        self.rates = [float(x) for x in harness.env_list("BENCH_ROUTING_RATES", "50,100,200")]
        self.duration = float(os.getenv("BENCH_ROUTING_DURATION") or 20)
        self.noop_duration = float(os.getenv("BENCH_ROUTING_NOOP_DURATION") or 6)
        self.pre_rates = [float(x) for x in harness.env_list("BENCH_ROUTING_PRERECEIVED_RATES", "200")]
        self.pre_duration = float(os.getenv("BENCH_ROUTING_PRERECEIVED_DURATION") or 8)
        self.latency_budget = float(os.getenv("BENCH_ROUTING_LATENCY_BUDGET") or 90)
        self.concurrency = int(os.getenv("BENCH_ROUTING_CONCURRENCY") or 2)
        self.generators = int(os.getenv("BENCH_ROUTING_GENERATORS") or 2)
        self.drain_timeout = float(os.getenv("BENCH_ROUTING_DRAIN_TIMEOUT") or 15)
        self.worker: subprocess.Popen | None = None
        self.worker_log = out_dir / "routing_worker.log"
        self.pg = None
        self.redis = None
        self.step_no = 0

    def prepare(self) -> dict:
        import psycopg
        import redis

        self.stack.prepare_database(reseed=getattr(self.options, "reseed", False))
        t = time.monotonic()
        info = json.loads(self.stack.python("-m", "bench.routing_data", "seed").strip().splitlines()[-1])
        if time.monotonic() - t > 5:
            print(f"== seeded in {time.monotonic() - t:.0f} s", flush=True)
        self.pg = psycopg.connect(self.stack.db_url, autocommit=True)
        self.redis = redis.Redis.from_url(self.stack.redis_url)
        return info

    def reset(self) -> None:
        """Back to the seed: drop the queued tasks, let the tasks in flight finish, delete what runs created."""
        self.redis.flushdb()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.pg.execute(BUSY_SQL).fetchone()[0]:
            time.sleep(0.2)
        for attempt in range(4):
            try:
                self.stack.python("-m", "bench.routing_data", "reset")
                break
            except SystemExit as exc:  # a task the worker had already reserved wrote meanwhile: again
                if attempt == 3 or "ForeignKeyViolation" not in str(exc):
                    raise
                time.sleep(2)
        self.redis.flushdb()

    # --- decision latency ----------------------------------------------------------------

    def latency(self) -> dict:
        self.reset()
        out = self.out_dir / "routing_latency.json"
        warmup = max(getattr(self.options, "warmup", 20), 30)
        print(f"\n== decision latency: {self.decisions} decisions after {warmup} warm-up "
              f"(load average {load_avg()})", flush=True)
        self.stack.python("-m", "bench.routing_probe", "latency", "--decisions", str(self.decisions), "--warmup",
                     str(warmup), "--budget", str(self.latency_budget), "--out", str(out), timeout=900)
        data = json.loads(out.read_text())
        return data

    # --- worker ----------------------------------------------------------------------------

    def start_worker(self) -> None:
        self.worker = self.stack.celery_worker(self.worker_log, concurrency=self.concurrency,
                                               extra=("--include", "bench.routing_noop"))
        print(f"== celery worker pid {self.worker.pid}, pool processes {children(self.worker.pid)}", flush=True)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.stack.stop(self.worker)

    def worker_cpu(self) -> float:
        pid = self.worker.pid
        return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))

    def log_offset(self) -> int:
        return self.worker_log.stat().st_size

    def log_tasks(self, start: int, end: int | None = None) -> dict:
        with self.worker_log.open("rb") as f:
            f.seek(start)
            text = f.read(None if end is None else end - start).decode(errors="replace")
        runtimes, results, failures = collections.defaultdict(list), collections.Counter(), []
        for m in TASK_LINE.finditer(text):
            if m["failed"]:
                failures.append(f"{m['task']}: {m['failed'][:300]}")
            else:
                runtimes[m["task"]].append(float(m["secs"]) * 1e3)
                results[m["result"]] += 1
        errors = [line for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line]
        return {"runtimes_ms": runtimes, "results": results, "failures": failures, "error_lines": errors}

    # --- one open-model step ------------------------------------------------------------------

    def _generators(self, rate: float, duration: float, mode: str, salt: str) -> list[dict]:
        procs, outs = [], []
        for k in range(self.generators):
            out = self.out_dir / f"routing_gen_{salt}_{k}.json"
            outs.append(out)
            cmd = [PY, "-m", "bench.routing_probe", "generate", "--rate", str(rate), "--duration", str(duration),
                   "--proc", str(k), "--procs", str(self.generators), "--salt", salt, "--mode", mode,
                   "--out", str(out)]
            err = out.with_suffix(".err")
            with err.open("w") as stderr:  # a file, not a pipe: a chatty generator must never block
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=self.stack.env(), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=stderr, text=True))
        for p, out in zip(procs, outs, strict=True):
            line = p.stdout.readline()
            if line.strip() != "ready":
                for q in procs:
                    q.kill()
                raise SystemExit(f"generator did not start: {line!r} {out.with_suffix('.err').read_text()[-2000:]}")
        return [{"proc": p, "out": o} for p, o in zip(procs, outs, strict=True)]

    @staticmethod
    def _go(gens: list[dict]) -> float:
        start = time.time() + 0.3
        for g in gens:
            g["proc"].stdin.write(f"{start}\n")
            g["proc"].stdin.flush()
        return start

    def step(self, rate: float, duration: float, *, mode: str = "receive", label: str = "") -> dict:
        noop = mode == "noop"
        self.step_no += 1
        salt = f"s{self.step_no}"
        self.reset()
        cursor = self.pg.cursor()
        max_conv = cursor.execute("SELECT coalesce(max(id), 0) FROM conversations_conversation").fetchone()[0]
        free_chat, free_async = cursor.execute(FREE_SLOTS_SQL).fetchone()
        log0 = self.log_offset()
        samples: list[dict] = []
        stop = threading.Event()

        def sampler() -> None:
            import psycopg

            with psycopg.connect(self.stack.db_url, autocommit=True) as conn:
                while not stop.is_set():
                    t = time.time()
                    violations, max_chat, max_async, at_limit, detail = conn.execute(CAPACITY_SQL).fetchone()
                    undecided = 0 if noop else conn.execute(UNDECIDED_SQL, [max_conv]).fetchone()[0]
                    active, waiting = conn.execute(ACTIVE_SQL).fetchone()
                    waits = conn.execute(LOCK_WAITS_SQL).fetchall()
                    samples.append({"t": t, "violations": violations, "max_chat": max_chat, "max_async": max_async,
                                    "at_limit": at_limit, "undecided": undecided,
                                    "queue_len": self.redis.llen(self.stack.queue), "detail": detail[:5],
                                    "active": active, "lock_waiting": waiting,
                                    "waits": [list(w) for w in waits]})
                    stop.wait(0.5)

        thread = threading.Thread(target=sampler, daemon=True)
        gens = self._generators(rate, duration, mode, salt)  # ready: arrivals prepared (pre-received ones stored)
        cpu_w0, cpu_pg0, m0 = self.worker_cpu(), _postgres_cpu(), proc_stat()
        start = self._go(gens)
        thread.start()
        for g in gens:
            g["proc"].communicate(timeout=duration + 120)
            err = g["out"].with_suffix(".err")
            if g["proc"].returncode:
                raise SystemExit(f"generator failed: {err.read_text()[-3000:]}")
            if err.stat().st_size == 0:
                err.unlink()
        sent_end = time.time()
        gen_data = [json.loads(g["out"].read_text()) for g in gens]
        for g in gens:
            g["out"].unlink()
        records = [r for d in gen_data for r in d["records"]]
        # Drain: wait until every arrival has its decision (or the noop task its start).
        deadline = time.time() + self.drain_timeout
        empty_since = None
        while time.time() < deadline:
            if noop:
                if self.redis.llen("bench:routing:noop") >= len(records):
                    break
            else:
                undecided = cursor.execute(UNDECIDED_SQL, [max_conv]).fetchone()[0]
                if undecided == 0:
                    break
                if self.redis.llen(self.stack.queue) == 0:  # nothing queued: wait for the tasks in flight, then stop
                    empty_since = empty_since or time.time()
                    if time.time() - empty_since > 3:
                        break
                else:
                    empty_since = None
            time.sleep(0.25)
        drained_at = time.time()
        stop.set()
        thread.join(10)
        cpu_w1, cpu_pg1, m1 = self.worker_cpu(), _postgres_cpu(), proc_stat()
        time.sleep(0.5)  # the log line of the last task
        tasks = self.log_tasks(log0)
        wall = drained_at - start
        row = {
            "label": label or mode, "mode": mode, "offered_per_s": rate, "duration_s": duration,
            "scheduled": sum(d["scheduled"] for d in gen_data), "sent": len(records),
            "unsent": sum(d["unsent"] for d in gen_data), "generator_errors": sum(d["errors"] for d in gen_data),
            "generator_cpu_pct_of_core": 100.0 * sum(d["cpu_s"] for d in gen_data) / max(sent_end - start, 1e-9),
            "send_lag_ms": {"p50": pct([(r[2] - r[1]) * 1e3 for r in records], 50),
                            "p99": pct([(r[2] - r[1]) * 1e3 for r in records], 99),
                            "max": max([(r[2] - r[1]) * 1e3 for r in records], default=0)},
            "send_ms": {"p50": pct([(r[3] - r[2]) * 1e3 for r in records], 50),
                        "p99": pct([(r[3] - r[2]) * 1e3 for r in records], 99)},
            "achieved_per_s": len([r for r in records if r[2] <= start + duration]) / duration,
            "worker_cpu_pct_of_core": 100.0 * (cpu_w1 - cpu_w0) / wall,
            "postgres_cpu_pct_of_core": 100.0 * (cpu_pg1 - cpu_pg0) / wall,
            "machine_busy_pct": busy_pct(m0, m1), "drained": drained_at < deadline, "drain_s": drained_at - sent_end,
            "free_slots_at_start": {"chat": free_chat, "async": free_async},
            "task_failures": tasks["failures"], "worker_error_lines": tasks["error_lines"][:20],
            "load_average": load_avg(),
        }
        if noop:
            raw = [json.loads(x) for x in self.redis.lrange("bench:routing:noop", 0, -1)]
            lat = [(s - i) * 1e3 for i, _, s in raw]
            starts = sorted(s for _, _, s in raw)
            row.update({
                "completed": len(raw),
                "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                               "max": max(lat, default=float("nan"))},
                "done_per_s_window": len([s for s in starts if s <= start + duration]) / duration,
                "backlog_at_end": len(records) - len([s for s in starts if s <= start + duration]),
            })
            return row
        ids = [r[0] for r in records if r[0] is not None and r[4]]
        intended = {r[0]: r[1] for r in records if r[0] is not None}
        rows = cursor.execute(DECISIONS_SQL, [ids]).fetchall()
        decided = [r for r in rows if r[2] is not None]
        lat_created = [(r[2] - r[1]) * 1e3 for r in decided]
        lat_intended = [(r[2] - intended[r[0]]) * 1e3 for r in decided]
        end = start + duration
        created_by_end = len([r for r in rows if r[1] <= end])
        decided_by_end = len([r for r in decided if r[2] <= end])
        # Service rate while a backlog existed: decisions per second in the seconds whose start had undecided work.
        first_times = sorted(r[2] for r in decided)
        outcomes = collections.Counter(r[3] for r in decided)
        violations, max_chat, max_async, at_limit, detail = cursor.execute(CAPACITY_SQL).fetchone()
        undecided = len(rows) - len(decided)
        queued_left = self.redis.llen(self.stack.queue)
        row.update({
            "conversations": len(ids), "not_new": len([r for r in records if not r[4]]), "decided": len(decided),
            "undecided_after_drain": undecided, "queue_left_after_drain": queued_left,
            # Lost: no decision although the queue is empty (a failed or never-enqueued task).
            "lost": undecided if queued_left == 0 else None,
            "multi_decision": len([r for r in decided if r[4] > 1]),
            "outcomes": dict(outcomes),
            "routed_per_s_window": decided_by_end / duration,
            "routed_per_s_overall": len(decided) / max((first_times[-1] - start) if first_times else 1, 1e-9),
            "backlog_at_end": created_by_end - decided_by_end,
            "latency_created_ms": {"p50": pct(lat_created, 50), "p95": pct(lat_created, 95),
                                   "p99": pct(lat_created, 99), "max": max(lat_created, default=float("nan"))},
            "latency_intended_ms": {"p50": pct(lat_intended, 50), "p95": pct(lat_intended, 95),
                                    "p99": pct(lat_intended, 99), "max": max(lat_intended, default=float("nan"))},
            "task_ms": {"n": len(tasks["runtimes_ms"]["routing.tasks.route_conversation"]),
                        "p50": pct(tasks["runtimes_ms"]["routing.tasks.route_conversation"], 50),
                        "p99": pct(tasks["runtimes_ms"]["routing.tasks.route_conversation"], 99),
                        "mean": (sum(tasks["runtimes_ms"]["routing.tasks.route_conversation"])
                                 / max(len(tasks["runtimes_ms"]["routing.tasks.route_conversation"]), 1))},
            "task_results": dict(tasks["results"]),
            "capacity": {
                "samples": len(samples), "sampled_violations": sum(s["violations"] for s in samples),
                "sampled_max_chat": max((s["max_chat"] for s in samples), default=0),
                "sampled_max_async": max((s["max_async"] for s in samples), default=0),
                "end_violations": violations, "end_max_chat": max_chat, "end_max_async": max_async,
                "end_agent_classes_at_limit": at_limit, "violation_detail": detail[:10] +
                [d for s in samples for d in s["detail"]][:10],
            },
            "max_undecided_sampled": max((s["undecided"] for s in samples), default=0),
            "backends_active_mean": sum(s["active"] for s in samples) / max(len(samples), 1),
            "backends_lock_waiting_mean": sum(s["lock_waiting"] for s in samples) / max(len(samples), 1),
            "lock_waits": _top_waits(samples),
            "max_queue_len_sampled": max((s["queue_len"] for s in samples), default=0),
        })
        harness.save_json(f"routing_step_{self.step_no}_{int(rate)}.json", {"row": row, "samples": samples})
        return row

    # --- output ------------------------------------------------------------------------------


def _top_waits(samples: list[dict]) -> list[dict]:
    """Lock waits summed over the samples: (lock type, relation, waiting statement) -> backend-samples."""
    total: collections.Counter = collections.Counter()
    for s in samples:
        for locktype, relation, query, n in s.get("waits", []):
            total[(locktype, relation, query)] += n
    return [{"locktype": k[0], "relation": k[1], "query": k[2], "backend_samples": n}
            for k, n in total.most_common(8)]


def print_latency(data: dict) -> list[dict]:
    samples = {k: [x / 1e6 for x in v] for k, v in data["samples_ns"].items()}
    base = samples["agent.raw_select"]
    rows, table = [], []
    header = ("case", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "p99 / raw-select p99", "target")
    connect = [x / 1e6 for x in data["connect_ns"]]
    parts = {k: [x / 1e6 for x in v] for k, v in data.get("parts_ns", {}).items()}
    cases = [("agent.raw_select (baseline)", base, "baseline"),
             ("agent.orm_get (baseline)", samples["agent.orm_get"], "baseline"),
             ("route.decision", samples["route.decision"], None),
             ("db.connect (part: + per Celery task)", connect, "(part)")]
    if parts:
        per = data.get("send_calls_per_decision", 0)
        cases += [(f"channel.send_1 (part: x{per:.1f} per decision)",
                   parts["channel.send_1"], "(part)"),
                  ("channel.send_3_one_loop (part)", parts["channel.send_3_one_loop"], "(part)")]
    for name, values, target in cases:
        p99 = pct(values, 99)
        if target is None:
            target = f"p99 < {TARGET_P99_MS:g} ms: " + ("met" if p99 < TARGET_P99_MS else "MISSED")
        r = {"case": name.split(" ")[0], "n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
             "p99": p99, "max": max(values), "ratio_p99": p99 / pct(base, 99), "target": target}
        rows.append(r)
        table.append((name, str(r["n"]), fmt(r["p50"], 2), fmt(r["p95"], 2), fmt(r["p99"], 2), fmt(r["max"], 2),
                      f"{r['ratio_p99']:.0f}x", target))
    print_rows(header, table, left=(0, len(header) - 1))

    # By path: where the decision ended.
    meta = data["decisions"]
    groups: dict[str, list[float]] = collections.defaultdict(list)
    for m, ms in zip(meta, samples["route.decision"], strict=True):
        pos = m["rule_position"]
        if m["outcome"] != "assigned":
            key = m["outcome"]
        elif pos is None:
            key = "assigned: no rule served (returning agent / inbox's teams)"
        elif pos <= 400:
            key = "assigned: rule 1-40 served"
        else:
            key = "assigned: rule 41-50 served"
        groups[key].append(ms)
    print("\n  by path (same samples):")
    path_rows = []
    table = []
    for key, values in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        table.append((key, str(len(values)), f"{100 * len(values) / len(meta):.0f} %", fmt(pct(values, 50), 2),
                      fmt(pct(values, 99), 2)))
        path_rows.append({"path": key, "n": len(values), "p50": pct(values, 50), "p99": pct(values, 99)})
    print_rows(("path", "n", "share", "p50 ms", "p99 ms"), table, indent=4)
    evaluated = [m["rules_evaluated"] for m in meta]
    cands = [m["candidates"] for m in meta]
    print(f"    rules evaluated per decision: median {pct(evaluated, 50):.0f}, "
          f"{100 * len([e for e in evaluated if e >= 41]) / len(evaluated):.0f} % evaluated 41+ of the "
          f"{data['rules']} rules; candidate agents examined: median {pct(cands, 50):.0f}, "
          f"p99 {pct(cands, 99):.0f} ({data['agents']} agents, {data['online']} online)")

    q = data["queries"]
    print(f"\n  SQL per decision (untimed pass, {len(q)} decisions): statements median "
          f"{pct([r['queries'] for r in q], 50):.0f} (min {min(r['queries'] for r in q)}, "
          f"max {max(r['queries'] for r in q)}); time inside cursor.execute median "
          f"{pct([r['sql_ms'] for r in q], 50):.1f} ms of {pct([r['total_ms'] for r in q], 50):.1f} ms")
    print("  statements per decision by the project function that issued them:")
    for caller, n, ms in data.get("callers", [])[:12]:
        print(f"    {n:5.2f} x  {ms:6.2f} ms  {caller}")
    print("  costliest statement shapes (per decision):")
    for s in data["shapes"][:8]:
        sql = " ".join(s["sql"].split())
        print(f"    {s['per_decision']:5.2f} x  {s['ms_per_decision']:6.2f} ms  {sql[:150]}")
    parts = data["profile_parts"]
    total = parts["do_route_conversation"] or 1
    print("  cProfile (50 decisions, cumulative, share of do_route_conversation; profiler overhead inflates "
          "Python):")
    for k, v in parts.items():
        if k in ("total_s", "do_route_conversation"):
            continue
        print(f"    {k:45s} {100 * v / total:5.1f} %")
    return rows + [{"case": "path", **r} for r in path_rows]


def print_throughput(rows: list[dict]) -> None:
    header = ("offered/s", "case", "arrived/s", "done/s in window", "backlog at end", "lat p50 ms", "lat p99 ms",
              "lat max ms", "drain s", "lost", "cap. violations", "CPU w/g/pg %", "machine %")
    names = {"noop": "empty task (baseline)", "receive": "received + routed", "prereceived": "routed (pre-received)"}
    table = []
    for r in rows:
        is_noop = r["mode"] == "noop"
        lat = r["latency_ms"] if is_noop else r["latency_intended_ms" if r["mode"] == "prereceived"
                                                  else "latency_created_ms"]
        cap = "-" if is_noop else (f"{r['capacity']['sampled_violations']} sampled / "
                                    f"{r['capacity']['end_violations']} end")
        lost = "-" if is_noop else ("still queued" if r["lost"] is None else str(r["lost"] + len(r["task_failures"])))
        table.append((
            f"{r['offered_per_s']:g}", names[r["mode"]], fmt(r["achieved_per_s"]),
            fmt(r["done_per_s_window"] if is_noop else r["routed_per_s_window"]), str(r["backlog_at_end"]),
            fmt(lat["p50"]), fmt(lat["p99"]), fmt(lat["max"], 0),
            fmt(r["drain_s"]) + ("" if r["drained"] else " (timeout)"), lost, cap,
            f"{r['worker_cpu_pct_of_core']:.0f}/{r['generator_cpu_pct_of_core']:.0f}/"
            f"{r['postgres_cpu_pct_of_core']:.0f}", f"{r['machine_busy_pct']:.0f}"))
    print_rows(header, table, left=(0, len(header) - 1))
    print("  lat: empty task = intended send -> task start; received + routed = Conversation.created_at -> "
          "RoutingDecision.created_at;\n  routed (pre-received) = intended enqueue -> RoutingDecision.created_at. "
          "done/s in window: tasks started / decisions made during the arrival window.\n  CPU w/g/pg = Celery "
          "worker (main + pool processes) / generators / the PostgreSQL server (all its databases, so other "
          "people's benchmarks too), % of one core over the step (2 cores = 200 %);\n  machine % = both cores busy (includes whatever else runs on the machine).")
    for r in rows:
        if r["mode"] == "noop":
            continue
        print(f"  {r['offered_per_s']:g}/s {names[r['mode']]}: {r['conversations']} conversations, outcomes "
              f"{r['outcomes']}; from intended arrival p50 {fmt(r['latency_intended_ms']['p50'])} / p99 "
              f"{fmt(r['latency_intended_ms']['p99'])} ms; task run time (worker log) p50 {fmt(r['task_ms']['p50'])}"
              f" / p99 {fmt(r['task_ms']['p99'])} / mean {fmt(r['task_ms']['mean'])} ms over {r['task_ms']['n']};"
              f" generator send lag p99 {fmt(r['send_lag_ms']['p99'])} ms, {r['unsent']} unsent; free slots at "
              f"start chat {r['free_slots_at_start']['chat']} / async {r['free_slots_at_start']['async']}; max per "
              f"agent chat {r['capacity']['sampled_max_chat']}/{r['capacity']['end_max_chat']} async "
              f"{r['capacity']['sampled_max_async']}/{r['capacity']['end_max_async']} (sampled/end), "
              f"{r['capacity']['end_agent_classes_at_limit']} agent-classes at their limit at the end, "
              f"{r['capacity']['samples']} capacity samples; max queue length {r['max_queue_len_sampled']}")
        print(f"    PostgreSQL backends of the bench db (sampled every 0.5 s): {r['backends_active_mean']:.1f} active, "
              f"{r['backends_lock_waiting_mean']:.1f} waiting for a lock on average; top lock waits "
              "(backend-samples):")
        for w in r["lock_waits"][:4]:
            print(f"      {w['backend_samples']:5d}  {w['locktype']} {w['relation'] or ''}  {w['query']}")
        if r["task_failures"] or r["lost"] or r["generator_errors"] or r["multi_decision"]:
            print(f"    !! lost {r['lost']}, failed tasks {len(r['task_failures'])}, generator errors "
                  f"{r['generator_errors']}, conversations with >1 decision {r['multi_decision']}")
            for f in r["task_failures"][:3]:
                print(f"       {f}")


def run(options=None) -> dict:
    out_dir = harness.results_dir()
    bench = Bench(out_dir, options)
    t0 = time.monotonic()
    info = bench.prepare()
    harness.wait_for_quiet("BENCH_ROUTING_MAX_LOAD", "BENCH_ROUTING_MAX_WAIT")
    print(f"== data: {info['agents']} agents, {info['rules']} active rules, 10 inboxes; load average {load_avg()}",
          flush=True)
    rows: list[dict] = []
    data = bench.latency()
    print(f"\nDecision latency: {len(data['decisions'])} decisions, one process, persistent connection "
          f"(load average {load_avg()})")
    lat_rows = print_latency(data)
    rows += [{"part": "latency", **r} for r in lat_rows]
    (out_dir / "routing_explain.txt").write_text("\n\n".join(
        f"-- {e['params']}\n{e['sql']}\n{e['plan']}" for e in data["explains"]))
    (out_dir / "routing_cprofile.txt").write_text(data["profile_text"])

    steps: list[dict] = []
    bench.start_worker()
    try:
        warm = bench.step(20, 4, label="warm-up")
        print(f"== warm-up: {warm['decided']}/{warm['conversations']} routed", flush=True)
        for rate in bench.rates:
            noop = bench.step(rate, bench.noop_duration, mode="noop")
            print(f"== {rate:g}/s empty task: {noop['completed']}/{noop['sent']} done, p99 "
                  f"{fmt(noop['latency_ms']['p99'])} ms (load average {load_avg()})", flush=True)
            routing = bench.step(rate, bench.duration)
            print(f"== {rate:g}/s received + routed: {routing['decided']}/{routing['conversations']} decided, "
                  f"arrived {fmt(routing['achieved_per_s'])}/s, routed {fmt(routing['routed_per_s_window'])}/s in "
                  f"window, backlog {routing['backlog_at_end']}, drain {fmt(routing['drain_s'])} s, capacity "
                  f"violations {routing['capacity']['sampled_violations']}/{routing['capacity']['end_violations']} "
                  f"(load average {load_avg()})", flush=True)
            steps += [noop, routing]
        for rate in bench.pre_rates:
            pre = bench.step(rate, bench.pre_duration, mode="prereceived")
            print(f"== {rate:g}/s pre-received, routed: {pre['decided']}/{pre['conversations']} decided, "
                  f"routed {fmt(pre['routed_per_s_window'])}/s in window (load average {load_avg()})", flush=True)
            steps.append(pre)
    finally:
        bench.stop_worker()
        bench.reset()
    print(f"\nThroughput: {bench.concurrency} worker processes (prefork), {bench.generators} generator processes, "
          f"open model, {bench.duration:g} s per rate (empty task {bench.noop_duration:g} s, pre-received "
          f"{bench.pre_duration:g} s); each step from the seeded state")
    print_throughput(steps)
    rows += [{"part": "throughput", **r} for r in steps]

    # Verdicts.
    decision = next(r for r in lat_rows if r["case"] == "route.decision")
    raw = next(r for r in lat_rows if r["case"] == "agent.raw_select")
    routed = [r for r in steps if r["mode"] != "noop"]
    top = [r for r in routed if r["offered_per_s"] >= TARGET_RATE]
    violations = sum(r["capacity"]["sampled_violations"] + r["capacity"]["end_violations"] for r in routed)
    failures = [f for r in routed for f in r["task_failures"]]
    targets = [
        harness.target(f"decision p99 < {TARGET_P99_MS:g} ms", decision["p99"] < TARGET_P99_MS,
                       f"p50 {decision['p50']:.1f}, p95 {decision['p95']:.1f}, p99 {decision['p99']:.1f} ms "
                       f"({decision['ratio_p99']:.0f}x)", f"raw PK select p99 {raw['p99']:.2f} ms"),
        harness.target(f"no capacity violation (all steps, up to {TARGET_RATE:g} arrivals/s)", violations == 0,
                       f"{violations} violations; {len(failures)} failed tasks"),
    ]
    kinds = collections.Counter("deadlock" if "deadlock detected" in f else f.split(":", 2)[-1][:60] for f in failures)
    print(f"\n  failed route_conversation tasks over all steps: {len(failures)} {dict(kinds) if kinds else ''}"
          + (" -- each is a conversation left to the drain's safety net" if failures else ""))
    for r in top:
        lost = (r["lost"] or 0) + len(r["task_failures"])
        lat = r["latency_intended_ms" if r["mode"] == "prereceived" else "latency_created_ms"]
        sustained = (r["achieved_per_s"] >= 0.95 * r["offered_per_s"]
                     and r["routed_per_s_window"] >= 0.95 * r["achieved_per_s"]
                     and lat["p99"] <= 1000 and lost == 0)
        print(f"  {r['offered_per_s']:g}/s {r['mode']} sustained (>= 95 % arrived and routed inside the window, "
              f"arrival -> decision p99 <= 1 s, nothing lost): {'yes' if sustained else 'NO'} "
              f"(arrived {fmt(r['achieved_per_s'])}/s, routed {fmt(r['routed_per_s_window'])}/s, p99 "
              f"{fmt(lat['p99'], 0)} ms, lost/failed {lost})")
    saturated = [r for r in routed if r["backlog_at_end"] > r["offered_per_s"] * 0.5]
    if saturated:
        best = max(saturated, key=lambda r: r["routed_per_s_window"])
        print(f"  routing capacity while saturated: {fmt(best['routed_per_s_window'])} decisions/s "
              f"({best['offered_per_s']:g}/s {best['mode']}; task run time mean {fmt(best['task_ms']['mean'])} ms "
              f"-> {bench.concurrency} x 1000 / mean = "
              f"{bench.concurrency * 1000 / max(best['task_ms']['mean'], 1e-9):.0f}/s if the pool processes had "
              "the cores to themselves)")
    print(f"  (bench_routing took {time.monotonic() - t0:.0f} s; logs in {out_dir.relative_to(ROOT)})")
    return {"targets": targets, "parts": rows}
