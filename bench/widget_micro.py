"""Bench-only, load-independent: CPU time and SQL statements per widget message, in one process.

    DATABASE_URL=postgres://…/<a *bench* database with bench.widget_setup's data> python -m bench.widget_micro [N]

Opens no socket: builds WidgetConsumer the way its connect() does (``_authenticate``), then, in one event
loop, awaits ``db_sync_to_async(consumer._message)`` N times for a chat in progress (the sends after commit
go through the real channel layer). Prints per message: the statements (CaptureQueriesContext in the sync
thread), the process's CPU time (both threads, the loop's sender task included) and the wall time, as
p50 / p90 / p99. A console consumer may be attached with ``--console`` (the inbox group's frames are then
forwarded to a fake socket in this loop too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p / 100)))]


async def run(n: int, profile: str | None) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.widget_setup import INBOX_NAME, ORIGIN
    from campaigns.actions import sign_visitor
    from campaigns.consumers import WidgetConsumer
    from campaigns.models import VisitorSession
    from conversations.models import Inbox
    from omnichannel.consumers import db_sync_to_async

    inbox = await db_sync_to_async(lambda: Inbox.objects.get(name=INBOX_NAME))()
    session = await db_sync_to_async(lambda: VisitorSession.objects.filter(inbox=inbox).order_by("id").first())()
    consumer = WidgetConsumer()
    result = await db_sync_to_async(consumer._authenticate)(inbox.public_token, sign_visitor(inbox, session.visitor_id),
                                                             ORIGIN)
    consumer.session, consumer.config = result
    consumer.config_read_at = time.monotonic()
    consumer.last_typing = 0.0
    queries: list[int] = []
    cpu: list[float] = []
    wall: list[float] = []
    tag = uuid.uuid4().hex[:8]

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()

    def message(content):
        if profiler is not None:  # the sync thread's work only, statements not captured (no debug cursor)
            if j >= 20:
                profiler.enable()
            try:
                return consumer._message(content)
            finally:
                profiler.disable()
        with CaptureQueriesContext(connection) as ctx:
            reply = consumer._message(content)
        queries.append(len(ctx.captured_queries))
        message.last = ctx.captured_queries
        return reply

    message.last = []
    for j in range(n + 20):
        c0, w0 = time.process_time(), time.perf_counter()
        await db_sync_to_async(message)({"type": "message", "body": f"micro {tag} #{j} hello", "client_id": f"{tag}-{j}"})
        await asyncio.sleep(0)  # let the sender task run its send
        await asyncio.sleep(0.002)
        if j >= 20:
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000 - 2.0)
    if profiler:
        profiler.dump_stats(profile)
        queries = [0] * (n + 20)
    q = queries[20:]
    print(f"{n} messages: statements {statistics.median(q):g} (min {min(q)}, max {max(q)}); "
          f"CPU ms p50 {pct(cpu, 50):.2f} p90 {pct(cpu, 90):.2f} p99 {pct(cpu, 99):.2f}; "
          f"wall ms p50 {pct(wall, 50):.2f} p90 {pct(wall, 90):.2f} p99 {pct(wall, 99):.2f}")
    for query in message.last:
        print("   ", query["sql"][:160])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=300)
    parser.add_argument("--profile", help="write cProfile stats here")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
    import django

    django.setup()
    from django.conf import settings

    if "bench" not in settings.DATABASES["default"]["NAME"]:
        raise SystemExit("point DATABASE_URL at a bench database")
    asyncio.run(run(args.n, args.profile))


if __name__ == "__main__":
    main()
