"""What-if for bench_widget: the product with a change bench/README.md discusses, applied in-process.

    WIDGET_FIXES=threads BENCH_WIDGET_PRODUCT_APP=bench.widget_fix_asgi:application scripts/bench.sh widget

Nothing here is used by the product; it only lets the benchmark show what a change would buy.
``WIDGET_FIXES`` (passed through to the server) picks them [threads]:

* ``threads``: the widget's database work (``db_sync_to_async`` in campaigns/consumers.py) runs with
  ``thread_sensitive=False``: in the loop's thread pool, so one socket's message does not wait for
  another's. The inbox stream's row lock still orders the sequence numbers.

(The earlier ``dispatch`` what-if, ``realtime.event`` dispatched without Channels' per-handler
``close_old_connections``, is now the product's own ``ReplayConsumer.dispatch``.)
"""

from __future__ import annotations

import functools
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
django.setup()

import campaigns.consumers as widget_consumers  # noqa: E402
from omnichannel.asgi import application  # noqa: E402, F401 - what daphne serves
from omnichannel.consumers import db_sync_to_async  # noqa: E402

FIXES = {f.strip() for f in (os.getenv("WIDGET_FIXES") or "threads").split(",") if f.strip()}
if FIXES - {"threads"}:
    raise SystemExit(f"WIDGET_FIXES: unknown {', '.join(sorted(FIXES - {'threads'}))}")
if "threads" in FIXES:
    widget_consumers.db_sync_to_async = functools.partial(db_sync_to_async, thread_sensitive=False)
