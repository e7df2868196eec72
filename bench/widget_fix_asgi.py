"""What-if for bench_widget: the product with fixes bench/README.md proposes, applied in-process.

    BENCH_WIDGET_PRODUCT_APP=bench.widget_fix_asgi:application scripts/bench.sh widget
    WIDGET_FIXES=dispatch,threads BENCH_WIDGET_PRODUCT_APP=bench.widget_fix_asgi:application ...

Nothing here is used by the product; it only lets the benchmark show what a fix would buy.
``WIDGET_FIXES`` (passed through to the server) picks them [dispatch]:

1. ``dispatch``: Channels (>= 4.2) runs ``close_old_connections`` through the process's single thread-sensitive
   sync thread before *every* consumer handler (``AsyncConsumer.dispatch``). A console's
   ``realtime.event`` needs no database, yet each one queues behind every visitor message being stored
   in that thread. Here ``realtime.event`` is dispatched directly (``_replay`` still reaches the
   database through ``database_sync_to_async``, which closes stale connections itself).
2. ``threads``: the widget's database work (``database_sync_to_async`` in campaigns/consumers.py) runs with
   ``thread_sensitive=False``: in the loop's thread pool, so one socket's message does not wait for
   another's. The inbox stream's row lock still orders the sequence numbers.
"""

from __future__ import annotations

import functools
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
django.setup()

from channels.db import DatabaseSyncToAsync  # noqa: E402

import campaigns.consumers as widget_consumers  # noqa: E402
from omnichannel.asgi import application  # noqa: E402, F401 - what daphne serves
from omnichannel.consumers import ReplayConsumer  # noqa: E402

_dispatch = ReplayConsumer.dispatch


async def dispatch(self, message: dict) -> None:
    if message.get("type") == "realtime.event":
        await self.realtime_event(message)
        return
    await _dispatch(self, message)


FIXES = {f.strip() for f in (os.getenv("WIDGET_FIXES") or "dispatch").split(",") if f.strip()}
if FIXES - {"dispatch", "threads"}:
    raise SystemExit(f"WIDGET_FIXES: unknown {', '.join(sorted(FIXES - {'dispatch', 'threads'}))}")
if "dispatch" in FIXES:
    ReplayConsumer.dispatch = dispatch
if "threads" in FIXES:
    widget_consumers.database_sync_to_async = functools.partial(DatabaseSyncToAsync, thread_sensitive=False)
