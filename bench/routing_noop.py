"""An empty Celery task, the same-run baseline of bench_routing's throughput (enqueue -> start, nothing else).

Loaded only into the benchmark's worker (``celery worker --include bench.routing_noop``). The task
appends (intended send time, send time, start time) to a Redis list of the bench Redis db; it opens no
database connection, so it measures Celery's transport and pool alone.
"""

from __future__ import annotations

import functools
import json
import time

from celery import shared_task

KEY = "bench:routing:noop"


@functools.lru_cache(maxsize=1)
def _client():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="bench.routing_noop.noop", acks_late=True)  # the same ack mode as route_conversation
def noop(intended: float, sent: float) -> None:
    _client().rpush(KEY, json.dumps([intended, sent, time.time()]))
