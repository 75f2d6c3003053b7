"""The registrar's binding writes and the sweeper's expiry set, on the embedded store.

The embedded store runs the very Lua scripts the registrar sends to Redis
(fakeredis with Lua), so these need no server; the same tests run against
the real Redis as integration tests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bench.registrar import Phone
from services.registrar.bindings import KEY_GRACE, BindingStore, Commit, NonceClaim
from services.registrar.register import BindingUpdate, ExpiryPolicy, Origin, update_bindings
from shared.registrar.layout import expiry_key
from shared.registrar.model import Binding
from shared.settings import Settings
from shared.sip.message import Request, parse_message
from shared.store import Store
from shared.store.embedded import open_embedded
from tests.conftest import REDIS_URL

AOR = "sip:alice@example.com"
ORIGIN = Origin("203.0.113.9", 40000, "udp", "edge-a")
POLICY = ExpiryPolicy(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=2)


@pytest.fixture
def now() -> float:
    """Wall time when the test starts: the AoR hash gets an EXPIREAT from the expiries, which
    must lie ahead (a time read once at import lies in the past when a long run reaches here)."""
    return float(int(time.time()))


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.integration)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[Store]:
    if request.param == "embedded":
        embedded = await open_embedded(Settings(data_dir=str(tmp_path), namespace=namespace))
        yield embedded
        await embedded.close()
        return
    real = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    yield real
    await real.delete_namespace()
    await real.close()


async def register(bindings: BindingStore, phone: Phone, expires: int, now: float) -> BindingUpdate:
    message = parse_message(phone.register(expires=expires))
    assert isinstance(message, Request)

    def decide(live: dict[str, Binding]) -> BindingUpdate:
        return update_bindings(message, AOR, live, origin=ORIGIN, policy=POLICY, now=now)

    return await bindings.change(AOR, now, decide, lambda update: update.current)


async def test_a_refresh_pushes_back_the_expiry_the_sweeper_reads(store: Store, now: float) -> None:
    bindings = BindingStore(store)
    phone = Phone("alice", "example.com", "pw", call_id="c1")
    (first,) = (await register(bindings, phone, 600, now)).current
    refresh = await register(bindings, phone, 600, now + 500)
    assert [b.contact for b in refresh.refreshed] == [first.contact]
    # Past the first expiry: the sweeper finds nothing due, the binding is still live.
    assert await bindings.claim_expired(now + 601) == []
    assert list((await bindings.snapshot(AOR)).live(now + 601)) == [first.contact]
    # Past the refreshed expiry: claimed, once.
    assert [b.contact for b in await bindings.claim_expired(now + 1101)] == [first.contact]
    assert await bindings.claim_expired(now + 1101) == []


async def test_an_unrefreshed_binding_is_claimed_at_its_expiry_not_before(
    store: Store, now: float
) -> None:
    """The control of the test above: the same binding, left alone, goes at its time."""
    bindings = BindingStore(store)
    phone = Phone("alice", "example.com", "pw", call_id="c1")
    await register(bindings, phone, 600, now)
    assert await bindings.claim_expired(now + 599) == []
    assert len(await bindings.claim_expired(now + 601)) == 1


async def test_a_removed_binding_leaves_the_expiry_set(store: Store, now: float) -> None:
    bindings = BindingStore(store)
    phone = Phone("alice", "example.com", "pw", call_id="c1")
    await register(bindings, phone, 600, now)
    removal = await register(bindings, phone, 0, now + 10)
    assert len(removal.removed) == 1
    assert await store.redis.zcard(expiry_key(store)) == 0  # nothing left for the sweeper
    assert await bindings.claim_expired(now + 10_000) == []
    assert (await bindings.snapshot(AOR)).stored == {}


async def test_a_binding_due_now_is_no_longer_live(store: Store, now: float) -> None:
    bindings = BindingStore(store)
    (binding,) = (await register(bindings, Phone("alice", "example.com", "pw"), 600, now)).current
    snapshot = await bindings.snapshot(AOR)
    assert list(snapshot.live(binding.expires_at - 0.001)) == [binding.contact]
    assert snapshot.live(binding.expires_at) == {}


async def test_the_aor_hash_outlives_its_last_binding_by_the_grace(
    store: Store, now: float
) -> None:
    bindings = BindingStore(store)
    await register(bindings, Phone("alice", "example.com", "pw"), 600, now)
    left = await store.redis.ttl(bindings.key(AOR))
    expected = now + 600 + KEY_GRACE - time.time()
    assert expected - 5 <= left <= expected + 1
    (stored,) = (await store.redis.hgetall(bindings.key(AOR))).values()
    assert b"null" not in stored  # defaults are left out: small bindings


async def test_a_commit_claims_its_nonce_count_once(store: Store, now: float) -> None:
    bindings = BindingStore(store)
    phone = Phone("alice", "example.com", "pw")
    claim = NonceClaim(store.key("nc", "nonce-1"), 1, 60)
    for expected in (Commit.DONE, Commit.REPLAYED):
        message = parse_message(phone.register(expires=600))
        assert isinstance(message, Request)
        snapshot = await bindings.snapshot(AOR)
        live = snapshot.live(now)
        update = update_bindings(message, AOR, live, origin=ORIGIN, policy=POLICY, now=now)
        assert await bindings.commit(snapshot, live, update.current, claim) is expected
    assert await store.redis.get(claim.key) == b"1"


async def test_aors_are_listed_in_pages_without_gaps_or_repeats(store: Store) -> None:
    """Among many keys that are not AoRs, every AoR is listed once, page by page."""
    bindings = BindingStore(store)
    aors = sorted(f"sip:user{n}@example.com" for n in range(40))
    async with store.redis.pipeline(transaction=False) as pipe:
        for n in range(3000):
            pipe.set(store.key("other", str(n)), 1)
        for aor in aors:
            pipe.hset(bindings.key(aor), "sip:x", "{}")
        await pipe.execute()
    cursor, pages = 0, []
    for _ in range(100):  # a bound for a broken cursor, far above the pages needed
        cursor, page = await bindings.aors_page(cursor, 5)
        pages.append(page)
        if cursor == 0:
            break
    assert cursor == 0
    assert all(page == sorted(page) for page in pages), pages
    assert sorted(aor for page in pages for aor in page) == aors  # each once
