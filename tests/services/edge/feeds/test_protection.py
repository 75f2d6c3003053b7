"""The cluster's protection state: two edge workers, the store, the events and the API.

Real Redis and RabbitMQ; each worker has its own bus connection and Redis
client, as two edge processes have.  What one counts blocks on the other;
what the API clears or allows is applied by both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import redis.asyncio as aioredis

from services.edge.feeds.protection import ProtectionFeed
from services.edge.policy.guard import Guard
from services.edge.protection import ProtectionSettings
from services.edge.proxy.actions import Action
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.protection import AuthBlocked, ScannerFlagged
from shared.protection import AuthFailureSettings, BlockList
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from shared.store import Store
from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.services.edge.api.support import protection_api

pytestmark = [pytest.mark.integration]

SETTINGS = AuthFailureSettings(delay_after=2, delay=0.5, block_after=3, block_time=60)
GUESSER = Destination("udp", "192.0.2.66", 5060)
WITHIN = 10.0


@dataclass
class Worker:
    feed: ProtectionFeed
    bus: AmqpBus
    store: Store

    @property
    def blocks(self) -> BlockList:
        return self.feed.blocks

    @property
    def guard(self) -> Guard:
        return self.feed.guard

    async def close(self) -> None:
        await self.feed.stop()
        await self.bus.close()
        await self.store.close()


async def start_worker(namespace: str, name: str) -> Worker:
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    bus = AmqpBus(RABBITMQ_URL, namespace, "edge", name)
    await bus.start()
    guard = Guard(ProtectionSettings(trusted="127.0.0.1/32"), name, lambda source: False)
    feed = ProtectionFeed(store, bus, guard, BlockList(), settings=SETTINGS, edge=name)
    await feed.start()
    return Worker(feed, bus, store)


@pytest.fixture
async def workers(namespace: str, redis_store: Store) -> AsyncIterator[tuple[Worker, Worker]]:
    a, b = await start_worker(namespace, "edge-a"), await start_worker(namespace, "edge-b")
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def api(redis_store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with protection_api(redis_store) as client:
        yield client


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for `check` (an event applied by another connection), at most `WITHIN` s."""
    for _ in range(int(WITHIN / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {WITHIN} s: {what}")


async def test_a_guesser_counted_on_one_worker_is_refused_on_the_other_then_cleared(
    workers: tuple[Worker, Worker], api: httpx.AsyncClient, namespace: str
) -> None:
    a, b = workers
    events: asyncio.Queue[Envelope] = asyncio.Queue()
    tap = AmqpBus(RABBITMQ_URL, namespace, "test", "tap")
    await tap.start()
    await tap.subscribe([AuthBlocked.routing_key], events.put)
    try:
        delays = [
            await w.feed.auth_failed(GUESSER, "alice", "example.com", "INVITE") for w in (a, b, a)
        ]
        assert delays == [0.0, 0.5, 0.5]  # held back from the second failure on
        envelope = await asyncio.wait_for(events.get(), WITHIN)
        blocked = envelope.payload(AuthBlocked)
        assert (blocked.kind, blocked.key, blocked.failures, blocked.edge) == (
            "account",
            "alice@example.com",
            3,
            "edge-a",
        )
        in_block = blocked.until - 1
        await until(
            lambda: b.blocks.refuses("alice@example.com", "198.51.100.1", in_block),
            "edge B follows edge A's block",
        )
        listed = (await api.get("/v1/protection/blocks")).json()["items"]
        assert [(i["kind"], i["key"]) for i in listed] == [("account", "alice@example.com")]
        assert 0 < listed[0]["remaining"] <= 60
        assert (await api.get("/v1/protection/blocks?kind=flood")).json()["items"] == []
        cleared = await api.delete("/v1/protection/blocks/account/alice@example.com")
        assert cleared.status_code == 204
        for worker in (a, b):
            await until(partial(lifted, worker), "every worker lifts it")
        assert (await api.get("/v1/protection/blocks")).json()["items"] == []
        again = await api.delete("/v1/protection/blocks/account/alice@example.com")
        assert again.status_code == 404
    finally:
        await tap.close()


def lifted(worker: Worker) -> bool:
    return not worker.blocks.refuses("alice@example.com", "x", 0.0)


def unflagged(worker: Worker) -> bool:
    return not worker.guard.scanner.is_flagged(GUESSER.host, 1.0)


def options_from_scanner() -> Request:
    parsed = parse_message(
        b"OPTIONS sip:100@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66;branch=z9hG4bKs\r\n"
        b"From: <sip:s@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: s1\r\nCSeq: 1 OPTIONS\r\n"
        b"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(parsed, Request)
    return parsed


async def test_scanner_flags_are_listed_and_cleared_everywhere_and_the_allow_list_applies(
    workers: tuple[Worker, Worker], api: httpx.AsyncClient
) -> None:
    a, b = workers
    for worker in (a, b):  # the scanner hit both workers
        actions: list[Action] = []
        assert worker.guard.screen(options_from_scanner(), GUESSER, 0.0, actions)
    await a.feed.record(
        ScannerFlagged(source=GUESSER.host, reason="user-agent", flag_time=3600.0, edge="edge-a")
    )
    listed = (await api.get("/v1/protection/blocks?kind=scanner")).json()["items"]
    assert [(i["key"], i["reason"], i["edge"]) for i in listed] == [
        (GUESSER.host, "user-agent", "edge-a")
    ]
    cleared = await api.delete(f"/v1/protection/blocks/scanner/{GUESSER.host}")
    assert cleared.status_code == 204
    for worker in (a, b):
        await until(partial(unflagged, worker), "every worker lifts the flag")
    # Allow-listed: never flagged again, on every worker, and kept in the store.
    body = {"network": "192.0.2.0/24", "description": "office NAT"}
    put = await api.put("/v1/protection/allowlist/office", json=body)
    assert put.status_code == 200 and put.json()["id"] == "office"
    for worker in (a, b):
        await until(partial(worker.guard.allowed, GUESSER), "every worker allows it")
        actions = []
        assert not worker.guard.screen(options_from_scanner(), GUESSER, 2.0, actions)
    listing = (await api.get("/v1/protection/allowlist")).json()["items"]
    assert listing == [{"id": "office", **body}]
    late = await start_worker(a.feed.store.store.namespace, "edge-c")  # loads it at start
    try:
        assert late.guard.allowed(GUESSER)
    finally:
        await late.close()
    assert (await api.delete("/v1/protection/allowlist/office")).status_code == 204
    await until(lambda: not b.guard.allowed(GUESSER), "removal applied")
    assert (await api.delete("/v1/protection/allowlist/office")).status_code == 404
