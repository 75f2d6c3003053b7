"""The shared limits on the real Redis: exact under concurrent edges, all or nothing, leases
that lapse, token buckets. Time is passed in (``now_ms``) where the test is about time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from shared.limits.model import Channel, Demand, LimitQuery, LimitVerdict
from shared.limits.store import SharedLimits
from shared.store import Store
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

PEER = Demand("peer:acme", max_concurrent=20)


async def test_twenty_slots_among_sixty_racing_calls_on_four_connections(
    redis_store: Store,
) -> None:
    """Four clients (two edges, two workers each) race 60 calls for 20 slots: exactly 20 win."""
    clients = [Store(aioredis.Redis.from_url(REDIS_URL), redis_store.namespace) for _ in range(4)]
    try:
        limits = [SharedLimits(client) for client in clients]
        verdicts = await asyncio.gather(
            *(limits[n % 4].acquire(LimitQuery(f"call-{n}", (PEER,))) for n in range(60))
        )
        assert sum(verdict.admitted for verdict in verdicts) == 20
        assert {v.refused for v in verdicts if not v.admitted} == {"peer:acme"}
        assert (await limits[0].usage(["peer:acme"]))[0].concurrent == 20
        admitted = [f"call-{n}" for n, verdict in enumerate(verdicts) if verdict.admitted]
        for call_id in admitted:
            await limits[1].release(call_id, ["peer:acme"])
        assert (await limits[2].usage(["peer:acme"]))[0].concurrent == 0
    finally:
        for client in clients:
            await client.close()


async def test_a_retransmitted_acquire_takes_no_second_slot_and_release_is_idempotent(
    redis_store: Store,
) -> None:
    limits = SharedLimits(redis_store)
    one = (Demand("peer:p", max_concurrent=1),)
    assert (await limits.acquire(LimitQuery("a", one))).admitted
    assert (await limits.acquire(LimitQuery("a", one))).admitted
    assert await limits.acquire(LimitQuery("b", one)) == LimitVerdict("peer:p", "concurrent")
    await limits.release("a", ["peer:p"])
    await limits.release("a", ["peer:p"])
    assert (await limits.acquire(LimitQuery("b", one))).admitted
    assert not (await limits.acquire(LimitQuery("a", one))).admitted


async def test_a_gateway_at_its_cap_is_skipped_for_the_next_and_nothing_is_half_taken(
    redis_store: Store,
) -> None:
    limits = SharedLimits(redis_store)
    first, second = capped("g1", 1), capped("g2", 1)
    peer = Demand("peer:p", max_concurrent=2)

    def call(call_id: str) -> LimitQuery:
        return LimitQuery(call_id, (peer,), (first, second))

    assert await limits.acquire(call("a")) == took("g1")
    assert await limits.acquire(call("b")) == took("g2", skipped=("gateway:g1",))
    # The peer's limit refuses the third: no channel is taken for it.
    assert await limits.acquire(call("c")) == LimitVerdict("peer:p", "concurrent")
    await limits.release("a", ["peer:p", "gateway:g1"])
    await limits.release("b", ["peer:p"])
    assert await limits.acquire(call("c")) == took("g1")
    assert await limits.acquire(call("d")) == LimitVerdict(skipped=("gateway:g1", "gateway:g2"))
    usage = await limits.usage(["peer:p", "gateway:g1", "gateway:g2"])
    assert [found.concurrent for found in usage] == [2, 1, 1]
    assert set(await limits.known()) == {"peer:p", "gateway:g1", "gateway:g2"}


def capped(gateway: str, cap: int, *carriers: tuple[str, int]) -> Channel:
    own = (Demand(f"gateway:{gateway}", cap),) if cap else ()
    caps = own + tuple(Demand(f"carrier:{name}", n) for name, n in carriers)
    return Channel(f"gateway:{gateway}", caps)


def took(gateway: str, *carriers: str, skipped: tuple[str, ...] = ()) -> LimitVerdict:
    channels = (f"gateway:{gateway}", *(f"carrier:{name}" for name in carriers))
    return LimitVerdict(gateway=f"gateway:{gateway}", skipped=skipped, channels=channels)


async def test_a_carriers_cap_holds_over_its_gateways_together(redis_store: Store) -> None:
    """Carrier c (cap 3) of g1 (cap 2) and g2 (uncapped itself): a gateway is skipped when
    either its own cap or its carrier's is reached; the channel taken counts in both."""
    limits = SharedLimits(redis_store)
    g1, g2 = capped("g1", 2, ("c", 3)), capped("g2", 0, ("c", 3))
    g2_only = LimitVerdict(gateway="gateway:g2", channels=("carrier:c",))

    def call(call_id: str) -> LimitQuery:
        return LimitQuery(call_id, (), (g1, g2))

    assert await limits.acquire(call("a")) == took("g1", "c")
    assert await limits.acquire(call("b")) == took("g1", "c")
    assert await limits.acquire(call("c")) == replace(g2_only, skipped=("gateway:g1",))
    assert await limits.acquire(call("d")) == LimitVerdict(skipped=("gateway:g1", "gateway:g2"))
    await limits.release("a", ["gateway:g1", "carrier:c"])
    assert await limits.acquire(LimitQuery("e", (), (g2,))) == g2_only
    usage = await limits.usage(["gateway:g1", "carrier:c"])
    assert [found.concurrent for found in usage] == [1, 3]


async def test_a_gateway_at_its_calls_per_second_is_skipped_like_a_busy_one(
    redis_store: Store,
) -> None:
    """g1 takes 2 calls a second (a bucket of 1), no channel cap; g2 a channel cap of 10.
    A call g1 has no token for goes to g2, and takes none of g1's; half a second later g1
    has its token again."""
    limits = SharedLimits(redis_store)
    paced = Channel("gateway:g1", (Demand("gateway:g1", None, max_cps=2, burst=1),))
    g2 = capped("g2", 10)

    def call(call_id: str, at: int) -> Awaitable[LimitVerdict]:
        return limits.acquire(LimitQuery(call_id, (), (paced, g2)), now_ms=at)

    assert await call("a", 1_000) == took("g1")
    assert await call("b", 1_000) == took("g2", skipped=("gateway:g1",))
    assert await call("c", 1_200) == took("g2", skipped=("gateway:g1",))
    assert await call("d", 1_500) == took("g1")
    usage = await limits.usage(["gateway:g1", "gateway:g2"], now_ms=1_500)
    assert [found.concurrent for found in usage] == [0, 2]  # no lease where no cap


async def test_a_lease_not_renewed_lapses_and_a_renewed_one_stays(redis_store: Store) -> None:
    """A crashed edge stops renewing: its calls' slots come back one lease time later."""
    limits = SharedLimits(redis_store, lease_ms=1000)
    one = (Demand("peer:p", max_concurrent=2),)
    assert (await limits.acquire(LimitQuery("kept", one), now_ms=10_000)).admitted
    assert (await limits.acquire(LimitQuery("crashed", one), now_ms=10_000)).admitted
    assert not (await limits.acquire(LimitQuery("new", one), now_ms=10_500)).admitted
    assert await limits.renew([("kept", ["peer:p"])], now_ms=10_900) == []
    assert (await limits.usage(["peer:p"], now_ms=11_500))[0].concurrent == 1
    assert (await limits.acquire(LimitQuery("new", one), now_ms=11_500)).admitted
    assert await limits.renew([("crashed", ["peer:p"])], now_ms=11_600) == ["crashed"]  # gone


async def test_cps_is_a_token_bucket_of_its_rate(redis_store: Store) -> None:
    """Rate 5: a burst of 5, then one per 200 ms; a refusal says how long until a token."""
    limits = SharedLimits(redis_store)
    rated = (Demand("peer:p", max_cps=5),)
    for n in range(5):
        assert (await limits.acquire(LimitQuery(f"c{n}", rated), now_ms=0)).admitted
    refused = await limits.acquire(LimitQuery("c5", rated), now_ms=0)
    assert refused == LimitVerdict("peer:p", "cps", 200)
    assert not (await limits.acquire(LimitQuery("c5", rated), now_ms=150)).admitted
    assert (await limits.acquire(LimitQuery("c5", rated), now_ms=200)).admitted
    admitted = 0
    for ms in range(210, 10_210, 10):  # 10 s at 100 offered per second: 50 more pass
        admitted += (await limits.acquire(LimitQuery(f"d{ms}", rated), now_ms=ms)).admitted
    assert admitted == 50


async def test_a_call_refused_for_cps_takes_no_lease(redis_store: Store) -> None:
    limits = SharedLimits(redis_store)
    both = (Demand("peer:p", max_concurrent=10, max_cps=1),)
    assert (await limits.acquire(LimitQuery("a", both), now_ms=0)).admitted
    assert (await limits.acquire(LimitQuery("b", both), now_ms=0)).kind == "cps"
    assert (await limits.usage(["peer:p"], now_ms=0))[0].concurrent == 1


async def test_a_smaller_bucket_admits_its_size_at_once_then_the_rate(redis_store: Store) -> None:
    """Rate 50 from a bucket of 5 (the default burst, a tenth of a second's): the first
    second admits 5 + 49 (the 50th token is due at its very end), each second after 50,
    at 200 offered per second."""
    limits = SharedLimits(redis_store)
    rated = (Demand("peer:p", max_cps=50, burst=5),)
    per_second = [0, 0, 0]
    for ms in range(0, 3000, 5):
        verdict = await limits.acquire(LimitQuery(f"c{ms}", rated), now_ms=ms)
        per_second[ms // 1000] += verdict.admitted
    assert per_second == [54, 50, 50]


async def test_any_edge_frees_a_call_from_its_call_id_alone(redis_store: Store) -> None:
    """Edge A admits a call (a peer's lease, a gateway's and its carrier's channels); its
    BYE goes through edge B, which knows only the Call-ID; A's next renewal finds it gone."""
    edge_a, edge_b = SharedLimits(redis_store), SharedLimits(redis_store)
    query = LimitQuery("call-1", (PEER,), (capped("g1", 5, ("c", 5)),))
    assert (await edge_a.acquire(query)).admitted
    assert (await edge_a.acquire(LimitQuery("call-2", (PEER,)))).admitted
    assert await edge_b.release_call("call-1") == 3
    usage = await edge_b.usage(["peer:acme", "gateway:g1", "carrier:c"])
    assert [found.concurrent for found in usage] == [1, 0, 0]
    assert await edge_b.release_call("call-1") == 0  # twice: nothing left
    held = [("call-1", ["peer:acme", "gateway:g1", "carrier:c"]), ("call-2", ["peer:acme"])]
    assert await edge_a.renew(held) == ["call-1"]
    await edge_a.release("call-2", ["peer:acme"])  # A's own release clears its record too
    assert await edge_b.release_call("call-2") == 0
