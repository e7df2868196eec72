"""A redis-py client on REDIS_URL, one per process, for what Django's cache API cannot say in one round trip (the
widget's rate limit and pre-chat stamp run Lua scripts). Keys are made with the cache's public
``make_and_validate_key``, so they live beside the cache's own."""

from __future__ import annotations

import os

import redis
from django.conf import settings

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    """The process's client (thread-safe: each command takes a connection from its pool); a forked child makes
    its own."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(settings.REDIS_URL))
    return _client[1]
