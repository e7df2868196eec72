"""Django's Redis cache backend, keeping its redis-py client objects instead of making one per operation.

``RedisCacheClient.get_client`` builds a new ``redis.Redis`` around the (kept) connection pool for every cache
call, and building one fills its response-callback table (~170 entries): ~0.25 ms of CPU per call, paid by
every console request for its session read. A ``redis.Redis`` is safe to share between threads (each command
takes a connection from the pool), so one per pool is kept. Same pools, same commands, same behaviour.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class _ReusingClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = self._pools.get(index)
            if pool is None:  # as RedisCacheClient._get_connection_pool
                pool = self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
            client = self._clients[index] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ReusingClient
