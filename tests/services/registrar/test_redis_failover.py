"""Registrations and route changes while the Redis primary is killed (Sentinel).

The registrar and the routing service (real RabbitMQ) keep their state in a real
Sentinel group; phones register (each phone once: challenge, then the authorized
REGISTER) and gateways are written through the API at a steady pace while the
primary is SIGKILLed. Every answer is a success or a clear 503 (SIP with
Retry-After, HTTP with Retry-After), registrations resume within two seconds
of the Sentinels naming the new primary, and every acknowledged binding and
route change is there afterwards, in the store and in an edge's routing cache
that kept answering from memory all along.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis

from bench.registrar import Phone
from deploy.labs.ports import free_port
from deploy.labs.sentinels import SentinelGroup, sentinel_group
from deploy.processes import stop_process
from services.health.lease import Lease
from shared.contracts.registrar import REGISTER_TIMEOUT
from shared.registrar.layout import aor_key
from shared.routing_table.store import RoutingStore
from shared.settings import Settings
from shared.store import Store, open_store
from shared.store.settings import StoreSettings
from tests.services.accounting.support import until, until_async
from tests.services.registrar.support import DOMAIN, Registrar, registrar
from tests.services.routing.support import Deployment, deployment

pytestmark = [pytest.mark.integration, pytest.mark.lab]

RESUME_WITHIN = 2.0
"""Seconds after the switch the test observes within which registrations work again (the
issue's bound). What the code adds after the Sentinels' announcement is well under a second
(the switch heard, the connections dropped, one retry); the rest is left to this shared
machine's load, where one REGISTER pair alone takes up to 0.8 s at load 20."""
PHONES = int(os.environ.get("CALLMESH_TEST_FAILOVER_PHONES", "120"))
"""Phones registering during the drill (one REGISTER pair each, ~40 per second)."""
PACE = 0.025
KILL_AFTER = 1.0
HUNG_PHONES = 120
HUNG_PACE = 0.08
"""About 12 registrations a second: the registrar's 32 REGISTERs in hand (4 workers x 8)
hold the ones stuck on the hung primary until the switch with room to spare."""
DRILL_LIMIT = 30.0 + PHONES * PACE * 4
"""Seconds the whole drill may take: only keeps a broken one from hanging."""


@dataclass
class Tally:
    """What each side saw: (time since start, status) per answer, and what was acknowledged."""

    started: float = field(default_factory=time.monotonic)
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    bindings: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)

    def note(self, kind: str, status: int) -> None:
        self.answers.append((time.monotonic() - self.started, kind, status))


async def _register(reg: Registrar, phone: Phone, tally: Tally) -> None:
    """Challenge and authorized REGISTER, as a phone does, until a 200: again after a 503
    (Retry-After), and with the new challenge after a 401 (a write whose answer was lost
    in the failover and that was retried finds its nonce-count already spent)."""
    while True:  # each answer within the edge's wait, or the phone would hear the edge's 503
        first = await reg.send(phone, phone.register(), timeout=REGISTER_TIMEOUT)
        if first.status == 401:
            phone.learn(first)
            final = await reg.send(phone, phone.register(), timeout=REGISTER_TIMEOUT)
        else:
            final = first
        tally.note("register", final.status)
        if final.status == 200:
            tally.bindings.append(phone.aor)
            return
        if final.status == 401:
            phone.learn(final)
            continue
        assert final.status == 503 and final.header("retry-after") == "5", final.status
        await asyncio.sleep(0.2)


async def _phones(reg: Registrar, phones: list[Phone], tally: Tally) -> None:
    async with asyncio.TaskGroup() as group:
        for phone in phones:
            group.create_task(_register(reg, phone, tally))
            await asyncio.sleep(PACE)


async def _route_changes(routing: Deployment, count: int, tally: Tally) -> None:
    for n in range(count):
        body = {"address": f"sip:198.51.100.{n % 250 + 1}:5060"}
        reply = await routing.client.put(f"/v1/gateways/drill-{n}", json=body)
        tally.note("route", reply.status_code)
        if reply.status_code == 200:
            tally.gateways.append(f"drill-{n}")
        else:
            assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
        await asyncio.sleep(PACE * 2)


async def _failover(group: SentinelGroup, tally: Tally) -> tuple[float, float]:
    """Kill the primary after ``KILL_AFTER``: (killed at, new primary named at)."""
    await asyncio.sleep(KILL_AFTER)
    old = group.primary()
    group.kill(old)
    killed = time.monotonic() - tally.started
    for _ in range(400):  # 20 s: only keeps a broken failover from hanging the test
        if await asyncio.to_thread(group.primary) != old:
            return killed, time.monotonic() - tally.started
        await asyncio.sleep(0.05)
    raise AssertionError("the Sentinels named no new primary")


async def test_registrations_and_route_changes_go_on_through_a_redis_failover(
    namespace: str,
) -> None:
    with sentinel_group() as group:
        store = await open_store(Settings(namespace=namespace, redis_url=group.url))
        try:
            async with (
                registrar(namespace, store, digest_domain_algorithms=f"{DOMAIN}=SHA-256") as reg,
                deployment(namespace, store) as routing,
            ):
                edge = await routing.edge()
                await routing.seed()
                phones = [await reg.subscriber(f"p{n}") for n in range(PHONES)]
                lease = Lease(store, store.key("health", "drill-lease"), "prober-1", ttl=30)
                assert await lease.hold()
                tally = Tally()
                async with asyncio.timeout(DRILL_LIMIT), asyncio.TaskGroup() as drill:
                    drill.create_task(_phones(reg, phones, tally))
                    drill.create_task(_route_changes(routing, PHONES // 2, tally))
                    failover = drill.create_task(_failover(group, tally))
                    # The edge's cache answers from memory while Redis is away.
                    while not failover.done():
                        assert edge.lookup("14075551234") is not None
                        await asyncio.sleep(0.05)
                killed, named = failover.result()
                # The prober's lease is held again on the new primary (taken anew if lost).
                assert await lease.hold()
                assert await store.redis.get(lease.key) == b"prober-1"
                await _check(routing, store, tally, killed=killed, named=named)
        finally:
            await store.delete_namespace()
            await store.close()


async def _check(
    routing: Deployment, store: Store, tally: Tally, *, killed: float, named: float
) -> None:
    statuses = {status for _, _, status in tally.answers}
    assert statuses <= {200, 401, 503}, statuses
    # None after `named`: the store followed the Sentinels' announcement before this test's
    # own poll of them saw the new primary, and every phone was answered by then.
    after = [at for at, kind, status in tally.answers if kind == "register" and at > named]
    resumed = min(after, default=named)
    late = [at for at, kind, status in tally.answers if kind == "register" and status == 503]
    counts = Counter((kind, status) for _, kind, status in tally.answers)
    print(  # the figures of the drill, for the report (pytest -s)
        f"killed {killed:.2f}s, new primary named {named:.2f}s, first REGISTER answered after "
        f"{resumed:.2f}s, last REGISTER 503 {max(late, default=0):.2f}s; {dict(counts)}"
    )
    assert resumed - named <= RESUME_WITHIN
    assert all(at - named <= RESUME_WITHIN for at in late)
    assert len(tally.bindings) == PHONES
    for aor in tally.bindings:  # every acknowledged binding, on the new primary
        assert await store.redis.hlen(aor_key(store, aor)) == 1, aor
    stored = await RoutingStore(store).existing("gateway", tally.gateways)
    assert stored == set(tally.gateways)
    version = int(await store.redis.get(store.key("routing", "version")) or 0)
    edge = routing.edges[0]
    await until(lambda: edge.version == version)  # caches converge on the new primary
    assert set(tally.gateways) <= set(edge.index.gateways)


async def test_while_redis_is_away_writes_fail_clearly_and_resume_when_it_is_back(
    namespace: str, tmp_path: Path
) -> None:
    """No Sentinel to fail over to: after the bounded wait, SIP 503 and HTTP 503 with
    Retry-After (never a 500 or a hang), and everything works again once Redis is back."""
    redis_server = SentinelGroup(tmp_path)
    port = free_port()
    redis_server.start_server(port)
    settings = Settings(namespace=namespace, redis_url=f"redis://127.0.0.1:{port}/0")
    store = await open_store(settings, StoreSettings(redis_wait=0.5))
    try:
        await _until_up(store)
        async with (
            registrar(namespace, store, digest_domain_algorithms=f"{DOMAIN}=SHA-256") as reg,
            deployment(namespace, store) as routing,
        ):
            alice = await reg.subscriber("alice")
            assert (await reg.registered(alice)).status == 200
            redis_server.kill(port)
            started = time.monotonic()
            refused = await reg.send(alice, alice.register())
            assert (refused.status, refused.header("retry-after")) == (503, "5")
            assert time.monotonic() - started < 3.0
            for reply in (
                await reg.client.put(
                    "/v1/subscribers/bob", json={"domain": DOMAIN, "password": "pw"}
                ),
                await routing.client.put("/v1/gateways/gw", json={"address": "sip:192.0.2.1"}),
            ):
                assert (reply.status_code, reply.headers["retry-after"]) == (503, "5")
                assert reply.json() == {"detail": "temporarily unavailable, retry later"}
            redis_server.start_server(port)  # back, empty (no persistence in this test)
            await _until_up(store)
            alice = await reg.subscriber("alice")
            assert (await reg.registered(alice)).status == 200
            gateway = await routing.client.put("/v1/gateways/gw", json={"address": "sip:192.0.2.1"})
            assert gateway.status_code == 200
    finally:
        await store.close()
        for process in redis_server.servers.values():
            stop_process(process, grace=2.0)


async def _until_up(store: Store) -> None:
    await until_async(store.ping)


@dataclass
class Attempt:
    """One phone's registration (challenge, then the authorized REGISTER), each with the
    edge's wait: when it started and ended (test clock), and the final status (None: no
    answer within the edge's wait, which answers the phone 503 itself)."""

    started: float
    ended: float = 0.0
    status: int | None = None


async def _attempt(reg: Registrar, phone: Phone, started: float, clock: Tally) -> Attempt:
    attempt = Attempt(started)
    try:
        first = await reg.send(phone, phone.register(), timeout=REGISTER_TIMEOUT)
        phone.learn(first)
        final = await reg.send(phone, phone.register(), timeout=REGISTER_TIMEOUT)
        attempt.status = final.status
        if final.status == 200:
            clock.bindings.append(phone.aor)
    except TimeoutError:
        pass
    attempt.ended = time.monotonic() - clock.started
    return attempt


async def _switch_seen(group: SentinelGroup, old: int, clock: Tally) -> float:
    """When the test sees the Sentinels name another primary than ``old`` (polled each 50 ms)."""
    for _ in range(400):  # 20 s: only keeps a broken failover from hanging the test
        if await asyncio.to_thread(group.primary) != old:
            return time.monotonic() - clock.started
        await asyncio.sleep(0.05)
    raise AssertionError("the Sentinels named no new primary")


async def test_registrations_resume_within_two_seconds_of_a_switch_away_from_a_hung_primary(
    namespace: str,
) -> None:
    """The primary stops answering without closing anything (SIGSTOP: a hung box, a cut
    network) while phones register at a steady pace; registrations work again within two
    seconds of the test seeing the Sentinels name the replica, every one started after that
    succeeds, and each is answered (200 or 503) within the edge's wait. Two seconds after
    the switch the old primary answers again, still believing it is the primary for a few
    seconds: nothing acknowledged may have gone to it. Fails without
    ``shared.store.failover``: the pooled connections to the hung primary deliver their
    writes to it once it is back, acknowledged (no replica left to WAIT for) and lost."""
    with sentinel_group() as group:
        store = await open_store(Settings(namespace=namespace, redis_url=group.url))
        try:
            async with registrar(
                namespace, store, digest_domain_algorithms=f"{DOMAIN}=SHA-256"
            ) as reg:
                phones = [await reg.subscriber(f"h{n}") for n in range(HUNG_PHONES)]
                clock = Tally()
                attempts: list[asyncio.Task[Attempt]] = []
                old = group.primary()
                switch: asyncio.Task[float] | None = None
                thawed = False
                async with asyncio.timeout(DRILL_LIMIT):
                    for n, phone in enumerate(phones):
                        now = time.monotonic() - clock.started
                        attempts.append(asyncio.create_task(_attempt(reg, phone, now, clock)))
                        if n == HUNG_PHONES // 8:
                            group.freeze(old)
                            switch = asyncio.create_task(_switch_seen(group, old, clock))
                        seen = switch is not None and switch.done() and not thawed
                        if seen and now >= switch.result() + RESUME_WITHIN:  # type: ignore[union-attr]
                            group.thaw(old)  # back, and still a primary for a while
                            thawed = True
                        await asyncio.sleep(HUNG_PACE)
                    done = await asyncio.gather(*attempts)
                assert switch is not None and thawed, "the phones ran out before the thaw"
                named = switch.result()
                await _check_hung(group, store, clock, done, named)
        finally:
            await store.delete_namespace()
            await store.close()


async def _check_hung(
    group: SentinelGroup, store: Store, clock: Tally, done: list[Attempt], named: float
) -> None:
    resumed = min((a.ended for a in done if a.status == 200 and a.ended > named), default=0.0)
    unanswered = [round(a.started, 2) for a in done if a.status is None]
    failed = [
        (round(a.started, 2), a.status) for a in done if a.started > named and a.status != 200
    ]
    print(  # the figures, for the report (pytest -s)
        f"new primary named {named:.2f}s, first REGISTER 200 after it {resumed:.2f}s, "
        f"statuses {dict(Counter(a.status for a in done))}, unanswered started at {unanswered}"
    )
    assert not unanswered, "answered by the edge's timeout, not by the registrar"
    assert {a.status for a in done} <= {200, 503}
    assert named < resumed <= named + RESUME_WITHIN
    assert not failed, f"registrations started after the switch that failed: {failed}"
    primary = Redis("127.0.0.1", group.primary())  # every acknowledged binding, on it
    try:
        missing = [aor for aor in clock.bindings if not primary.hlen(aor_key(store, aor))]
    finally:
        primary.close()
    assert not missing, f"{len(missing)} acknowledged bindings not on the new primary"


async def test_a_register_meeting_a_hung_redis_is_answered_503_within_the_edges_wait(
    namespace: str, tmp_path: Path
) -> None:
    """A lone Redis stops answering (SIGSTOP) after the challenge: the authorized REGISTER
    is answered 503 with Retry-After before the edge gives up, not after its socket timeout
    (5 s) and retries; fails without the registrar's deadline."""
    redis_server = SentinelGroup(tmp_path)
    port = free_port()
    redis_server.start_server(port)
    settings = Settings(namespace=namespace, redis_url=f"redis://127.0.0.1:{port}/0")
    store = await open_store(settings)
    try:
        await _until_up(store)
        async with registrar(namespace, store, digest_domain_algorithms=f"{DOMAIN}=SHA-256") as reg:
            alice = await reg.subscriber("alice")
            assert (await reg.registered(alice)).status == 200
            challenge = await reg.send(alice, alice.register())
            alice.learn(challenge)
            redis_server.freeze(port)
            started = time.monotonic()
            refused = await reg.send(alice, alice.register(), timeout=REGISTER_TIMEOUT)
            assert (refused.status, refused.header("retry-after")) == (503, "5")
            print(f"answered 503 after {time.monotonic() - started:.2f}s")
            redis_server.thaw(port)
    finally:
        await store.close()
        for process in redis_server.servers.values():
            stop_process(process, grace=2.0)
