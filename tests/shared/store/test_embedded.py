import asyncio
from pathlib import Path

from shared.settings import Settings
from shared.store.embedded import open_embedded


async def test_snapshot_survives_a_restart_with_remaining_ttl(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), namespace="emb")
    store = await open_embedded(settings)
    await store.redis.hset(store.key("gateways"), mapping={"1": "sip:198.51.100.7"})
    await store.redis.set(store.key("binding"), "alice", px=60_000)
    await store.redis.set(store.key("gone"), "x", px=1)
    await asyncio.sleep(0.01)
    await store.close()
    assert (tmp_path / "store-emb.snapshot").exists()

    again = await open_embedded(settings)
    assert await again.redis.hgetall(again.key("gateways")) == {b"1": b"sip:198.51.100.7"}
    assert 0 < await again.redis.pttl(again.key("binding")) <= 60_000
    assert await again.redis.exists(again.key("gone")) == 0
    await again.close()


async def test_lua_and_transactions_work_embedded(tmp_path: Path) -> None:
    store = await open_embedded(Settings(data_dir=str(tmp_path)))
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.incr(store.key("version"))
        pipe.incr(store.key("version"))
        assert await pipe.execute() == [1, 2]
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert await store.redis.eval(script, 1, store.key("version"), 5) == 7
    await store.close()
