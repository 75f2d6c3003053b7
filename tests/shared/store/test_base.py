import pytest

from shared.store import Store

pytestmark = pytest.mark.integration


async def test_keys_are_namespaced(redis_store: Store) -> None:
    assert redis_store.key("routing", "rules") == f"{redis_store.namespace}:routing:rules"


async def test_round_trip_and_namespace_cleanup(redis_store: Store) -> None:
    r = redis_store.redis
    await r.set(redis_store.key("a"), "1")
    await r.hset(redis_store.key("h"), mapping={"x": "y"})
    assert await r.get(redis_store.key("a")) == b"1"
    assert await r.hgetall(redis_store.key("h")) == {b"x": b"y"}
    assert await redis_store.ping()
    await r.set("other-namespace-key-" + redis_store.namespace, "keep")
    assert await redis_store.delete_namespace() == 2
    assert await r.exists(redis_store.key("a"), redis_store.key("h")) == 0
    assert await r.get("other-namespace-key-" + redis_store.namespace) == b"keep"
    await r.delete("other-namespace-key-" + redis_store.namespace)
