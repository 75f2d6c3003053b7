"""A B2BUA pair's record in the real Redis: found by either leg's dialog, expiring, deleted,
and written in order by the background writer."""

from __future__ import annotations

import asyncio

import pytest

from services.edge.runtime.b2bua_state import PairStates, PairWriter
from shared.store import Store

pytestmark = pytest.mark.integration


def record(pair_id: str = "00112233445566aa") -> dict[str, str]:
    fields = {"id": pair_id, "created": "1.0", "answered": "2.0"}
    for side in "ab":
        fields |= {
            f"{side}_call_id": f"{side}-call@example.com",
            f"{side}_local_tag": f"cmb2b{side}1",
            f"{side}_remote_tag": f"{side}9",
            f"{side}_routes": "",
        }
    return fields


async def test_a_record_is_found_by_either_legs_dialog_until_deleted(redis_store: Store) -> None:
    states = PairStates(redis_store, ttl=3600)
    await states.save(record())
    assert await states.load("a-call@example.com", "cmb2ba1") == record()
    assert await states.load("b-call@example.com", "cmb2bb1") == record()
    assert await states.load("b-call@example.com", "cmb2ba1") is None  # another leg's tag
    assert 3500 < await redis_store.redis.ttl(states.pair_key(record()["id"])) <= 3600
    await states.delete(record())
    assert await states.load("a-call@example.com", "cmb2ba1") is None
    assert await redis_store.redis.keys(f"{redis_store.namespace}:*") == []


async def test_the_writer_keeps_the_order_of_saves_and_deletes(redis_store: Store) -> None:
    writer = PairWriter(PairStates(redis_store, ttl=60))
    changed = record() | {"a_remote_tag": "a10"}
    writer.save(record())
    writer.save(changed)
    writer.delete(changed)
    writer.save(record("99887766554433bb") | {"a_call_id": "other@example.com"})
    for _ in range(100):
        if await writer.states.load("other@example.com", "cmb2ba1") is not None:
            break
        await asyncio.sleep(0.01)
    assert await writer.states.load("a-call@example.com", "cmb2ba1") is None
    assert await writer.states.load("other@example.com", "cmb2ba1") is not None
    await writer.stop()
