"""omnichannel/library_internals.py: the private attributes it uses exist in the pinned versions, and an upgrade
fails here first (then re-check each use against the new version and move PINNED)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from omnichannel import library_internals


@pytest.mark.parametrize("library", sorted(library_internals.PINNED))
def test_the_installed_libraries_are_the_pinned_versions(library):
    assert version(library) == library_internals.PINNED[library], (
        f"{library} changed: check omnichannel/library_internals.py against it, then update PINNED")
    assert library_internals.pinned(library)


def test_channels_redis_still_has_what_publish_pipelined_uses():
    from channels_redis.pubsub import (
        RedisPubSubChannelLayer,
        RedisPubSubLoopLayer,
        RedisSingleShardConnection,
    )

    assert callable(RedisPubSubChannelLayer._get_layer)
    assert callable(RedisPubSubLoopLayer._get_group_channel_name)
    assert callable(RedisPubSubLoopLayer._get_shard)
    shard = RedisSingleShardConnection({"address": "redis://127.0.0.1:6379/15"}, None)
    assert hasattr(shard, "_lock") and hasattr(shard, "_redis") and callable(shard._ensure_redis)


@pytest.mark.django_db
def test_psycopg_still_has_what_flush_prepared_maintenance_uses():
    from django.db import connection
    from psycopg._preparing import PrepareManager

    connection.ensure_connection()
    raw = connection.connection
    assert isinstance(raw._prepared, PrepareManager) and hasattr(raw._prepared, "_to_flush")
    assert callable(raw._prepared.maintain_gen) and hasattr(raw, "_pipeline")
    library_internals.flush_prepared_maintenance(raw)  # nothing queued: nothing sent, no error
