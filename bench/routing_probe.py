"""The two measuring processes of bench_routing, run in the routing bench database's environment.

    python -m bench.routing_probe latency --decisions 1000 --warmup 50 --out latency.json
    python -m bench.routing_probe generate --rate 100 --duration 20 --proc 0 --procs 2 --salt s1 --out g0.json

``latency``: new conversations are received with ``do_receive_inbound_message`` (the Celery enqueue
patched out), then routed one at a time with ``do_route_conversation`` in this process. Each round
times, interleaved: the baselines (one agent row by primary key through the ORM, and the same row by a
raw SELECT on the same connection), then one decision. After each decision the conversation is closed
and its queue entry removed (untimed), so the agents' loads stay as seeded and every decision sees the
same state. Then, untimed: SQL statements per decision (count, time, shapes), EXPLAIN of the costliest
SELECT shapes, a cProfile of 50 decisions, and the cost of opening a database connection (a Celery
task pays it each time while CONN_MAX_AGE is 0), and of one channel-layer send as ``publish()`` makes it
after commit (one ``async_to_sync`` call per event) against three sends in one ``async_to_sync`` call.

``generate``: an open-model arrival generator. It prepares its share of the arrivals, prints "ready",
reads the common start time (epoch seconds) from stdin, then at start + i / rate for its i's calls
``do_receive_inbound_message`` (``--mode receive``; routing is enqueued on commit), or enqueues the empty
task (``noop``), or enqueues ``route_conversation`` for a conversation it received before "ready"
(``prereceived``: the workers' routing capacity without the receiving competing for the cores). It never
waits for a reply and writes (conversation id, intended time, send start, send end) per arrival.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import re
import sys
import time
from pathlib import Path

from bench.harness import ROOT, own_cpu_seconds, setup_django

_IN_LIST = re.compile(r"IN \((?:%s, )*%s\)")


def _shape(sql: str) -> str:
    return _IN_LIST.sub("IN (...)", sql)


def _caller() -> str:
    """The innermost project function (not Django, not this file) on the stack: who issued the statement."""
    import traceback

    for frame in reversed(traceback.extract_stack(limit=60)):
        path = frame.filename
        if "site-packages" in path or not path.startswith(str(ROOT)) or "/bench/" in path or path.endswith("pgtrip.py"):
            continue
        return f"{Path(path).relative_to(ROOT)}:{frame.name}"
    return "?"


def _receive(arrivals, spec: dict):
    from conversations.actions import do_receive_inbound_message

    inbox = arrivals.inboxes[spec["inbox_id"]]
    fields = {k: v for k, v in spec.items() if k != "inbox_id"}
    return do_receive_inbound_message(inbox=inbox, **fields)


# --- latency ---------------------------------------------------------------------------------------


def latency(decisions: int, warmup: int, out: Path, budget: float = 0) -> None:
    from unittest import mock

    from django.db import connection, transaction
    from django.utils import timezone

    from agents.models import AgentProfile
    from bench.routing_data import Arrivals
    from conversations.models import Conversation
    from omnichannel import realtime
    from routing.actions import do_route_conversation
    from routing.models import QueueEntry, RoutingDecision, RoutingRule

    # As a Celery worker process runs a decision (omnichannel/celery.py): its after-commit frames go to the
    # process's sender thread, so the decision ends at the commit, not when Redis has the frames.
    realtime.send_in_background()
    arrivals = Arrivals(salt="latency")
    agent_ids = list(AgentProfile.objects.values_list("pk", flat=True))
    positions = dict(RoutingRule.objects.values_list("pk", "position"))
    rng = random.Random(7)

    def fresh(n: int) -> list[int]:
        ids = []
        with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
            while len(ids) < n:
                result = _receive(arrivals, arrivals.next())
                if result.new_conversation:
                    ids.append(result.message.conversation_id)
        return ids

    def close(cid: int) -> None:
        Conversation.objects.filter(pk=cid).update(status="closed", closed_at=timezone.now(), waiting_since=None)
        QueueEntry.objects.filter(conversation_id=cid).delete()

    def describe(cid: int, outcome: str) -> dict:
        d = RoutingDecision.objects.filter(conversation_id=cid).order_by("id").first()
        details = d.details if d else {}
        return {"outcome": outcome, "rule_position": positions.get(d.rule_id) if d and d.rule_id else None,
                "rules_evaluated": len(details.get("rules", [])),
                "targets_tried": len(details.get("targets", [])),
                "candidates": sum(len(t.get("candidates", [])) for t in details.get("targets", [])),
                "method": d.method if d else ""}

    raw_sql = ("SELECT id, user_id, display_name, role, status, max_concurrent, max_concurrent_async, "
               "last_assigned_at FROM routing_agentprofile WHERE id = %s")

    def orm_lookup(pk: int) -> None:
        AgentProfile.objects.get(pk=pk)

    def raw_lookup(pk: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(raw_sql, [pk])
            cursor.fetchone()

    clock = time.perf_counter_ns
    # Warm-up: lingua's models, the ORM's caches, PostgreSQL's buffers.
    for cid in fresh(warmup):
        do_route_conversation(conversation_id=cid)
        orm_lookup(rng.choice(agent_ids))
        raw_lookup(rng.choice(agent_ids))
        close(cid)

    samples = {"agent.orm_get": [], "agent.raw_select": [], "route.decision": []}
    meta = []
    batch = 100
    done = 0
    stop_at = time.monotonic() + budget if budget else None
    # This machine's PostgreSQL runs with autovacuum off (production's default is on): between batches, untimed,
    # the tables every decision updates are vacuumed, as autovacuum would keep them (a run otherwise piles up
    # dead row versions, ~5 per decision, and its last decisions read through them).
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0] == "on"

    def vacuum() -> None:
        if autovacuum:
            return
        assert connection.get_autocommit()  # outside any transaction: VACUUM cannot run in one
        with connection.cursor() as cursor:
            cursor.execute("VACUUM conversations_conversation, routing_agentprofile, routing_agentload,"
                           " routing_queueentry, omnichannel_realtimestream")

    while done < decisions and (stop_at is None or time.monotonic() < stop_at):
        vacuum()
        for cid in fresh(min(batch, decisions - done)):
            pk = rng.choice(agent_ids)
            t = clock()
            orm_lookup(pk)
            samples["agent.orm_get"].append(clock() - t)
            t = clock()
            raw_lookup(pk)
            samples["agent.raw_select"].append(clock() - t)
            t = clock()
            outcome = do_route_conversation(conversation_id=cid).outcome
            samples["route.decision"].append(clock() - t)
            meta.append(describe(cid, outcome))
            close(cid)
            done += 1

    # SQL per decision (untimed pass): statements, their time, and their shapes.
    statements: list[tuple[str, object, float, str]] = []

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((sql, params, time.perf_counter() - t0, _caller()))

    query_rows = []
    shapes: dict[str, dict] = {}
    callers: dict[str, list] = {}
    for cid in fresh(50):
        statements.clear()
        t0 = time.perf_counter()
        with connection.execute_wrapper(wrapper):
            outcome = do_route_conversation(conversation_id=cid).outcome
        total = time.perf_counter() - t0
        info = describe(cid, outcome)
        query_rows.append({**info, "queries": len(statements), "sql_ms": sum(s[2] for s in statements) * 1e3,
                           "total_ms": total * 1e3})
        for sql, params, dt, caller in statements:
            c = callers.setdefault(caller, [0, 0.0])
            c[0] += 1
            c[1] += dt * 1e3
            key = _shape(sql)
            s = shapes.setdefault(key, {"count": 0, "ms": 0.0, "sample_sql": sql, "sample_params": params})
            s["count"] += 1
            s["ms"] += dt * 1e3
        close(cid)
    top = sorted(shapes.values(), key=lambda s: -s["ms"])
    explains = []
    for s in top[:6]:
        sql = s["sample_sql"]
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, s["sample_params"])
                    plan = "\n".join(r[0] for r in cursor.fetchall())
                transaction.set_rollback(True)
        except Exception as exc:  # noqa: BLE001 - a plan we cannot get is reported, not fatal
            plan = f"(EXPLAIN failed: {exc})"
        explains.append({"sql": sql, "params": repr(s["sample_params"]), "plan": plan})

    # cProfile of 50 decisions.
    ids = fresh(50)
    profiler = cProfile.Profile()
    for cid in ids:
        profiler.enable()
        do_route_conversation(conversation_id=cid)
        profiler.disable()
        close(cid)
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(60)
    total_tt = stats.total_tt

    def cum(pattern: str) -> float:
        best = 0.0
        for (filename, _, name), (_, _, _, ct, _) in stats.stats.items():
            if re.search(pattern, f"{filename}:{name}"):
                best = max(best, ct)
        return best

    send_calls = sum(cc for (f, _, n), (cc, _, _, _, _) in stats.stats.items()
                     if f.endswith("omnichannel/realtime.py") and n in ("_send", "_send_many"))
    profile_parts = {
        "total_s": total_tt,
        "do_route_conversation": cum(r"routing/actions/decision\.py:do_route_conversation$"),
        "gather_facts": cum(r"conversations/conditions\.py:gather_facts$"),
        "detect_language (lingua)": cum(r"conversations/conditions\.py:detect_language$"),
        "evaluate (50 rules)": sum(ct for (f, _, n), (_, _, _, ct, _) in stats.stats.items()
                                   if f.endswith("conversations/conditions.py") and n in ("evaluate", "evaluate_compiled")),
        "_choose (lock + load + eligibility)": sum(ct for (f, _, n), (_, _, _, ct, _) in stats.stats.items()
                                                   if f.endswith("routing/actions/decision.py") and n == "_choose"),
        "_hand_over (assign + events + publish)": cum(r"routing/actions/decision\.py:_hand_over$"),
        "publish (replay log, in transaction)": cum(r"omnichannel/realtime\.py:publish$"),
        "_send (channel layer, after commit)": sum(ct for (f, _, n), (_, _, _, ct, _) in stats.stats.items()
                                                   if f.endswith("omnichannel/realtime.py") and n in ("_send", "_send_many")),
        "SQL round trips (django _execute + pgtrip.trip)": sum(
            ct for (f, _, n), (_, _, _, ct, _) in stats.stats.items()
            if (f.endswith("django/db/backends/utils.py") and n == "_execute")
            or (f.endswith("omnichannel/pgtrip.py") and n == "trip")),
    }

    # Opening a connection: what each Celery task pays with CONN_MAX_AGE=0 (not in route.decision).
    connect = []
    for _ in range(60):
        connection.close()
        t = clock()
        connection.ensure_connection()
        connect.append(clock() - t)
    connect = connect[10:]

    # One channel-layer send as publish() does it after commit (async_to_sync: a new event loop, so a new
    # Redis connection, per event), against three sends inside one async_to_sync call.
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer


    async def three() -> None:
        layer = get_channel_layer()
        for _ in range(3):
            await layer.group_send("bench.routing.none", {"type": "realtime.event", "event": {}})

    realtime.flush_background()
    realtime.send_in_background(False)  # the parts below time the sends themselves, in this thread
    parts = {"channel.send_1": [], "channel.send_3_one_loop": []}
    for i in range(60):
        t = clock()
        realtime._send("bench.routing.none", {"type": "bench"})
        if i >= 10:
            parts["channel.send_1"].append(clock() - t)
        t = clock()
        async_to_sync(three)()
        if i >= 10:
            parts["channel.send_3_one_loop"].append(clock() - t)

    out.write_text(json.dumps({
        "samples_ns": samples, "decisions": meta, "connect_ns": connect, "parts_ns": parts, "queries": query_rows,
        "shapes": [{"sql": s["sample_sql"][:2000], "per_decision": s["count"] / len(query_rows),
                    "ms_per_decision": s["ms"] / len(query_rows)} for s in top[:25]],
        "callers": sorted(([k, v[0] / len(query_rows), v[1] / len(query_rows)] for k, v in callers.items()),
                         key=lambda x: -x[1]),
        "explains": explains, "profile_text": buf.getvalue(), "profile_parts": profile_parts,
        "send_calls_per_decision": send_calls / len(ids),
        "rules": RoutingRule.objects.filter(is_active=True).count(),
        "agents": AgentProfile.objects.count(),
        "online": AgentProfile.objects.filter(status="online").count(),
    }, default=str))


# --- generator ---------------------------------------------------------------------------------------


def generate(*, rate: float, duration: float, proc: int, procs: int, salt: str, mode: str, out: Path,
             grace: float) -> None:
    from unittest import mock

    from bench.routing_data import Arrivals

    total = int(round(rate * duration))
    mine = list(range(proc, total, procs))
    arrivals = None
    specs: list[dict] = []
    received: list[int] = []
    if mode == "noop":
        import omnichannel.celery  # noqa: F401 - the app, so that shared_task binds to it
        from bench.routing_noop import noop as noop_task
    else:
        arrivals = Arrivals(salt=salt, proc=proc, procs=procs)
        specs = [arrivals.next() for _ in mine]
    if mode == "prereceived":  # received now, routed later: only the enqueue happens at the arrival times
        from routing.tasks import route_conversation

        with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
            for spec in specs:
                result = _receive(arrivals, spec)
                received.append(result.message.conversation_id if result.new_conversation else None)
    from django.db import connection

    connection.ensure_connection()
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    records = []
    unsent = 0
    cpu0 = own_cpu_seconds()
    errors = 0
    for n, i in enumerate(mine):
        intended = start + i / rate
        now = time.time()
        if now < intended:
            time.sleep(intended - now)
        elif now > start + duration + grace:
            unsent = len(mine) - n
            break
        sent = time.time()
        if mode == "noop":
            noop_task.delay(intended, sent)
            records.append([None, intended, sent, time.time(), True])
            continue
        if mode == "prereceived":
            if received[n] is not None:
                route_conversation.delay(received[n])
            records.append([received[n], intended, sent, time.time(), received[n] is not None])
            continue
        try:
            result = _receive(arrivals, specs[n])
        except Exception as exc:  # noqa: BLE001 - counted and reported; the run goes on
            errors += 1
            print(f"arrival failed: {exc!r}", file=sys.stderr, flush=True)
            continue
        records.append([result.message.conversation_id, intended, sent, time.time(), result.new_conversation])
    cpu = own_cpu_seconds() - cpu0
    out.write_text(json.dumps({"records": records, "unsent": unsent, "errors": errors, "cpu_s": cpu,
                               "scheduled": len(mine), "start": start}))


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--decisions", type=int, default=1000)
    lat.add_argument("--warmup", type=int, default=50)
    lat.add_argument("--budget", type=float, default=0, help="stop the timed decisions after this many seconds")
    lat.add_argument("--out", type=Path, required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--rate", type=float, required=True)
    gen.add_argument("--duration", type=float, required=True)
    gen.add_argument("--proc", type=int, default=0)
    gen.add_argument("--procs", type=int, default=1)
    gen.add_argument("--salt", default="g")
    gen.add_argument("--mode", choices=["receive", "noop", "prereceived"], default="receive",
                     help="receive: do_receive_inbound_message per arrival (routing enqueued on commit); noop: "
                          "enqueue the empty task; prereceived: conversations received beforehand, only "
                          "route_conversation.delay per arrival")
    gen.add_argument("--grace", type=float, default=10.0, help="stop sending this long after the window")
    gen.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_django()
    if args.command == "latency":
        latency(args.decisions, args.warmup, args.out, args.budget)
    else:
        generate(rate=args.rate, duration=args.duration, proc=args.proc, procs=args.procs, salt=args.salt,
                 mode=args.mode, out=args.out, grace=args.grace)


if __name__ == "__main__":
    _main()
