"""The fraud scripts on the real Redis: counts over sliding windows, crossings reported once,
blocks set at a critical level and lifted by an operator, call ends, racing edges. Time is
passed in (``now_ms``) where the test is about time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.fraud.rules import FraudIndex, FraudQuery, FraudRuleBody, FraudVerdict
from shared.fraud.store import FraudStore
from shared.store import Store
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

ALICE = "subscriber:alice@example.com"
T0 = 1_700_000_000_000


def query(call_id: str, *, number: str = "9005551234", **rule: Any) -> FraudQuery:
    index = FraudIndex()
    body = {"caller": ALICE, "prefixes": ["900", "901"], **rule}
    index.put("premium", FraudRuleBody.model_validate(body))
    found = index.query(call_id, ALICE, number)
    assert found is not None
    return found


CPM: dict[str, Any] = {"calls_per_minute": {"warning": 3, "critical": 5}}


async def test_calls_per_minute_warn_then_block_the_account_until_unblocked(
    redis_store: Store,
) -> None:
    fraud = FraudStore(redis_store)
    verdicts = [
        await fraud.check(query(f"c{n}", **CPM, block="account"), T0 + n) for n in range(1, 8)
    ]
    assert [v.admitted for v in verdicts] == [True] * 4 + [False] * 3
    warning = verdicts[2].crossings
    assert [(c.metric, c.level, c.value, c.threshold) for c in warning] == [
        ("calls_per_minute", "warning", 3.0, 3)
    ]
    critical = verdicts[4]
    assert [(c.level, c.value) for c in critical.crossings] == [("critical", 5.0)]
    assert critical.block_id is not None and critical.blocked == "account"
    assert critical.crossings[0].block_id == critical.block_id
    assert {v.block_id for v in verdicts[4:]} == {critical.block_id}
    assert not verdicts[5].crossings  # a blocked call counts nothing
    (block,) = await fraud.blocks()
    assert block["account"] == ALICE and block["value"] == 5 and block["prefix"] is None
    assert block["rule"] == "premium" and block["metric"] == "calls_per_minute"
    assert await fraud.unblock(critical.block_id) is not None
    assert await fraud.unblock(critical.block_id) is None
    again = await fraud.check(query("c9", **CPM, block="account"), T0 + 10)
    assert again.admitted and not again.crossings  # still past critical: no second crossing


async def test_a_number_outside_the_prefixes_is_refused_by_an_account_block_only(
    redis_store: Store,
) -> None:
    fraud = FraudStore(redis_store)
    for n in range(5):
        await fraud.check(query(f"p{n}", **CPM, block="prefix"), T0 + n)
    prefix_blocked = await fraud.check(query("p9", **CPM, block="prefix"), T0 + 9)
    assert prefix_blocked.blocked == "prefix 900"
    assert (
        await fraud.check(query("o1", number="9011111", **CPM, block="prefix"), T0 + 9)
    ).admitted
    assert (
        await fraud.check(query("o2", number="4412345", **CPM, block="prefix"), T0 + 9)
    ).admitted
    assert await fraud.blocked(ALICE) == {"900"}


async def test_the_minute_slides(redis_store: Store) -> None:
    fraud = FraudStore(redis_store, minute_ms=1000)
    for n in range(4):
        await fraud.check(query(f"s{n}", **CPM), T0 + n * 400)  # 0, 400, 800, 1200 ms
    (counts,) = await fraud.counts([("premium", ALICE)], T0 + 1200)
    assert counts.calls_per_minute == 3  # the first is older than a minute
    assert (counts.concurrent, counts.sequential) == (0, 0)  # thresholds it does not set
    assert (await fraud.watched()) == [("premium", ALICE)]


async def test_sequential_calls_to_one_prefix_and_a_retransmission_counts_once(
    redis_store: Store,
) -> None:
    fraud = FraudStore(redis_store)
    seq: dict[str, Any] = {"sequential": {"warning": 2, "critical": 3}}
    first = await fraud.check(query("q1", **seq), T0)
    assert (await fraud.check(query("q1", **seq), T0 + 1)).crossings == ()  # asked again
    assert (await fraud.counts([("premium", ALICE)], T0 + 1))[0].sequential == 1
    assert not first.crossings
    assert (await fraud.check(query("q2", number="9011", **seq), T0 + 2)).crossings == ()  # new run
    second = await fraud.check(query("q3", number="9012", **seq), T0 + 3)
    assert [(c.metric, c.level, c.prefix) for c in second.crossings] == [
        ("sequential", "warning", "901")
    ]
    critical = await fraud.check(query("q4", number="9013", **seq), T0 + 4)
    assert [c.level for c in critical.crossings] == ["critical"]
    assert critical.admitted  # the rule does not block: an event only


async def test_concurrent_calls_are_freed_and_minutes_added_by_the_call_end(
    redis_store: Store,
) -> None:
    fraud = FraudStore(redis_store)
    rule: dict[str, Any] = {
        "concurrent": {"warning": 2, "critical": 3},
        "minutes_per_day": {"warning": 10, "critical": 20},
        "block": "account",
    }
    assert (await fraud.check(query("m1", **rule), T0)).admitted
    crossed = await fraud.check(query("m2", **rule), T0 + 1)
    assert [(c.metric, c.level, c.value) for c in crossed.crossings] == [
        ("concurrent", "warning", 2.0)
    ]
    account, ended = await fraud.call_ended("m1", 12.5, T0 + 2)
    assert account == ALICE
    assert [(c.metric, c.level, c.value) for c in ended.crossings] == [
        ("minutes_per_day", "warning", 12.5)
    ]
    assert (await fraud.call_ended("m1", 12.5, T0 + 3)) == ("", FraudVerdict())  # once per call
    (counts,) = await fraud.counts([("premium", ALICE)], T0 + 3)
    assert (counts.concurrent, counts.minutes_per_day) == (1, 12.5)
    _, critical = await fraud.call_ended("m2", 8.0, T0 + 4)
    assert [(c.level, c.block_id is not None) for c in critical.crossings] == [("critical", True)]
    assert not (await fraud.check(query("m3", **rule), T0 + 5)).admitted
    day_later = T0 + 24 * 3600 * 1000 + 10
    (counts,) = await fraud.counts([("premium", ALICE)], day_later)
    assert counts.minutes_per_day == 0


async def test_two_edges_racing_past_the_critical_level_set_one_block(
    redis_store: Store,
) -> None:
    clients = [Store(aioredis.Redis.from_url(REDIS_URL), redis_store.namespace) for _ in range(4)]
    try:
        stores = [FraudStore(client) for client in clients]
        verdicts = await asyncio.gather(
            *(stores[n % 4].check(query(f"r{n}", **CPM, block="account")) for n in range(40))
        )
        assert sum(v.admitted for v in verdicts) == 4
        crossings = [c for v in verdicts for c in v.crossings]
        assert sorted(c.level for c in crossings) == ["critical", "warning"]
        assert len(await stores[0].blocks()) == 1
    finally:
        for client in clients:
            await client.close()
