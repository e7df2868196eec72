"""The one module that reaches into third-party libraries' private attributes, each use pinned to the version
it was written for (``PINNED``) and checked by tests/omnichannel/test_library_internals.py, which fails when
an upgrade changes the attribute or the version. Nothing else in the product may do this.

- ``publish_pipelined``: channels_redis' pubsub layer sends each frame in a round trip of its own; the
  realtime sender thread (omnichannel/realtime.py) sends what piled up as one pipeline per Redis shard.
- ``flush_prepared_maintenance``: psycopg queues the DEALLOCATE of an evicted prepared statement until after
  the next statement, which after a pipeline may be the PREPARE it then drops (omnichannel/pgtrip.py).

Both are performance machinery (docs/performance.md); with a library version they were not written for, each
falls back to the library's public behaviour instead of failing.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import version
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer

logger = logging.getLogger(__name__)

# Library -> the version whose private attributes this module uses.
PINNED = {"channels_redis": "4.3.0", "psycopg": "3.3.9"}


@functools.cache
def pinned(library: str) -> bool:
    """Whether the installed `library` is the version this module was written for."""
    return version(library) == PINNED[library]


async def publish_pipelined(layer, frames: list[tuple[str, dict[str, Any]]]) -> bool:
    """channels_redis' pubsub layer: every frame in one Redis round trip per shard (a pipeline of the PUBLISHes
    group_send makes, in the order given), instead of one round trip per frame (a shard's publishes take turns
    under its lock anyway). False for another layer (the caller sends one by one). A failed round trip is
    logged; its events are in the replay log, as with group_send."""
    if not isinstance(layer, RedisPubSubChannelLayer) or not pinned("channels_redis"):
        return False
    loop_layer = layer._get_layer()
    by_shard: dict[Any, list[tuple[str, bytes]]] = {}
    for group, frame in frames:
        channel = loop_layer._get_group_channel_name(group)
        by_shard.setdefault(loop_layer._get_shard(channel), []).append(
            (channel, layer.serialize({"type": "realtime.event", "event": frame})))
    for shard, messages in by_shard.items():
        try:
            async with shard._lock:  # what RedisSingleShardConnection.publish holds around its PUBLISH
                shard._ensure_redis()
                pipeline = shard._redis.pipeline(transaction=False)
                for channel, message in messages:
                    pipeline.publish(channel, message)
                await pipeline.execute()
        except Exception:
            logger.exception("channel layer send of %d frames failed", len(messages))
    return True


def flush_prepared_maintenance(raw) -> None:
    """Send now what psycopg queued for the server's prepared statements (a DEALLOCATE of one evicted from its
    cache, or of all after a ROLLBACK or DROP it saw). It sends them after the next statement it runs, which,
    after a pipeline, may be a PREPARE of a name that a DEALLOCATE ALL then removes while psycopg keeps using it
    ("prepared statement _pg3_N does not exist"). Private psycopg API, hence the guard: without it, nothing
    is done (the utility commands of a trip never reach the cache anyway)."""
    if not pinned("psycopg"):
        return
    manager = getattr(raw, "_prepared", None)
    if manager is not None and getattr(manager, "_to_flush", None) and not raw._pipeline:
        with raw.lock:
            raw.wait(manager.maintain_gen(raw))
