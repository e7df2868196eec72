"""omnichannel.cache.RedisCache: Django's Redis cache, one redis-py client kept per connection pool."""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from omnichannel.cache import RedisCache


def test_default_cache_keeps_its_client_and_behaves_as_djangos():
    cache = caches["default"]
    assert isinstance(cache, RedisCache) and isinstance(cache, DjangoRedisCache)
    client = cache._cache.get_client("k")
    assert cache._cache.get_client("k", write=True) is client  # one server: one pool, one client
    assert client.connection_pool is cache._cache._pools[0]
    cache.set("omni-cache-test", {"a": 1}, 30)
    assert cache.get("omni-cache-test") == {"a": 1}
    assert cache.add("omni-cache-test", 2) is False
    cache.set("omni-cache-n", 1, 30)
    assert cache.incr("omni-cache-n") == 2
    cache.delete_many(["omni-cache-test", "omni-cache-n"])
    assert cache.get("omni-cache-test", "gone") == "gone"


def test_several_servers_each_get_their_pool_and_client():
    cache = RedisCache("redis://127.0.0.1:6379/13,redis://127.0.0.1:6379/13", {})
    writer = cache._cache.get_client(write=True)
    reader = cache._cache.get_client()
    assert writer is cache._cache.get_client(write=True)
    assert reader is cache._cache.get_client()  # the one read replica (index 1)
    assert writer is not reader and set(cache._cache._pools) == {0, 1}
