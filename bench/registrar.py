"""Registrar benchmark: digest REGISTERs through the ``registrar.register`` queue, and memory.

Run: ``.venv/bin/python bench/registrar.py [--phones N] [--seconds S] [--edges E]``
against the RabbitMQ and Redis of the environment (fresh namespace, removed
afterwards). A registrar runs as its own process (``python -m services.registrar``);
this process plays ``--edges`` edges (one AMQP connection each) sending the
REGISTERs of ``--phones`` simulated phones, ``--concurrency`` at a time.
Phases: the initial registration of every phone (401 challenge, then the
authenticated REGISTER), then refreshes for ``--seconds`` (each re-using its
nonce with the next nonce-count, as phones do). Reports REGISTERs per second
of both phases, failures, and Redis memory per binding (``MEMORY USAGE`` of the
AoR hashes, plus the expiry set's share).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.registrar.subscribers import Subscriber, SubscriberStore
from shared.bus.amqp import AmqpBus
from shared.contracts.registrar import REGISTER_QUEUE, RegisterReply, RegisterRequest
from shared.registrar.layout import aor_key, expiry_key, nonce_count_key
from shared.sip.auth.digest import Challenge, authorize, parse_challenge
from shared.sip.message import Response, parse_message
from shared.store import Store

ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = os.environ.get("CALLMESH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Phone:
    """A simulated UA registering ``user@domain``: builds REGISTERs, answers challenges.

    Tests use it too, to send REGISTERs exactly as an edge would pass them on.
    """

    user: str
    domain: str
    password: str
    contact: str = ""
    host: str = "192.0.2.10"
    port: int = 5060
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cseq: int = 0
    challenge: Challenge | None = None
    nc: int = 0
    algorithm: str = "SHA-256"

    def __post_init__(self) -> None:
        self.contact = self.contact or f"sip:{self.user}@{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def register(
        self,
        *,
        expires: int | None = 600,
        contacts: list[str] | None = None,
        headers: tuple[str, ...] = (),
        password: str | None = None,
        cseq: int | None = None,
    ) -> bytes:
        """The next REGISTER (CSeq + 1 unless given), authorized when a challenge is known."""
        self.cseq = self.cseq + 1 if cseq is None else cseq
        uri = f"sip:{self.domain}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <{self.aor}>;tag={secrets.token_hex(4)}",
            f"To: <{self.aor}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
        ]
        lines += [
            f"Contact: {c}" for c in (contacts if contacts is not None else [f"<{self.contact}>"])
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines += headers
        if self.challenge is not None:
            self.nc += 1
            credentials = authorize(
                self.challenge,
                username=self.user,
                password=self.password if password is None else password,
                method="REGISTER",
                uri=uri,
                cnonce=secrets.token_hex(4),
                nc=self.nc,
            )
            lines.append(f"Authorization: {credentials}")
        return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()

    def learn(self, response: Response) -> None:
        """Keep the challenge of a 401 for our algorithm (nonce-count restarts)."""
        for value in response.headers("www-authenticate"):
            challenge = parse_challenge(value)
            if challenge.algorithm == self.algorithm:
                self.challenge, self.nc = challenge, 0
                return

    def via_edge(self, sip: bytes, edge: str = "edge-a", transport: str = "udp") -> RegisterRequest:
        """``sip`` as an edge hands it to the registrar (seen from a NAT'd source)."""
        return RegisterRequest(
            sip=sip,
            source_host="203.0.113.9",
            source_port=40000 + self.port % 1000,
            transport=transport,
            edge=edge,
            edge_address="sip:198.51.100.1:5060",
            connection_id=7 if transport == "tcp" else None,
        )


async def send(bus: AmqpBus, request: RegisterRequest, timeout: float = 10.0) -> Response:  # noqa: ASYNC109
    """The registrar's response; ``TimeoutError`` after ``timeout`` (an edge's is 5 s)."""
    reply = RegisterReply.model_validate_json(
        await bus.request(REGISTER_QUEUE, request.to_bytes(), timeout=timeout)
    )
    assert reply.sip is not None
    response = parse_message(reply.sip)
    assert isinstance(response, Response)
    return response


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0


async def register_all(
    phones: list[Phone], buses: list[AmqpBus], concurrency: int, *, challenge: bool, tally: Tally
) -> None:
    """Register every phone once (after a 401 first when ``challenge``)."""
    queue = iter(phones)
    edges = itertools.cycle(buses)

    async def worker(bus: AmqpBus) -> None:
        for phone in queue:
            try:
                response = await send(bus, phone.via_edge(phone.register()))
                if challenge and response.status == 401:
                    phone.learn(response)
                    response = await send(bus, phone.via_edge(phone.register()))
                if response.status == 200:
                    tally.ok += 1
                else:
                    tally.failed += 1
            except (TimeoutError, ConnectionError):
                tally.failed += 1

    await asyncio.gather(*(worker(next(edges)) for _ in range(concurrency)))


async def create_subscribers(store: Store, phones: list[Phone]) -> None:
    """One subscriber per phone, straight into Redis (the API would dominate the setup)."""
    subscribers = SubscriberStore(store)
    started = time.perf_counter()
    for chunk in range(0, len(phones), 50):
        await asyncio.gather(
            *(
                subscribers.put(Subscriber(p.user, p.domain, True, {}), p.password)
                for p in phones[chunk : chunk + 50]
            )
        )
    print(f"subscribers: {len(phones)} created in {time.perf_counter() - started:.1f}s")


async def memory_per_binding(store: Store, phones: list[Phone], sample: int = 2000) -> float:
    redis = store.redis
    step = max(1, len(phones) // sample)
    sampled = phones[::step]
    hashes = [await redis.memory_usage(aor_key(store, p.aor), samples=0) or 0 for p in sampled]
    expiry = await redis.memory_usage(expiry_key(store), samples=0) or 0
    return sum(hashes) / len(hashes) + expiry / len(phones)


async def nonce_memory(store: Store, phones: list[Phone], sample: int = 200) -> float:
    sizes = []
    for phone in phones[:sample]:
        if phone.challenge is not None:
            key = nonce_count_key(store, phone.challenge.nonce)
            sizes.append(await store.redis.memory_usage(key, samples=0) or 0)
    return sum(sizes) / max(1, len(sizes))


async def run(args: argparse.Namespace) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    env = {
        **os.environ,
        "CALLMESH_NAMESPACE": namespace,
        "CALLMESH_RABBITMQ_URL": RABBITMQ_URL,
        "CALLMESH_REDIS_URL": REDIS_URL,
        "CALLMESH_HTTP_LISTEN": "127.0.0.1:0",
        "CALLMESH_LOG_LEVEL": "WARNING",
        "CALLMESH_REGISTRAR_MAX_EXPIRES": "7200",
        "CALLMESH_REGISTRAR_WORKERS": str(args.workers),
        # The simulated phones answer SHA-256, as they did when the figures were taken.
        "CALLMESH_DIGEST_DOMAIN_ALGORITHMS": "bench.example.com=SHA-256,MD5",
    }
    phones = [
        Phone(
            f"u{n}",
            "bench.example.com",
            f"pw{n}",
            host=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        )
        for n in range(args.phones)
    ]
    await create_subscribers(store, phones)
    registrar = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.registrar", env=env, cwd=ROOT
    )
    buses = [AmqpBus(RABBITMQ_URL, namespace, "edge", f"bench-{n}") for n in range(args.edges)]
    try:
        for bus in buses:
            await bus.start()
        await asyncio.sleep(2.0)  # the registrar connects and starts consuming
        tally = Tally()
        started = time.perf_counter()
        await register_all(phones, buses, args.concurrency, challenge=True, tally=tally)
        elapsed = time.perf_counter() - started
        print(
            f"initial registration: {tally.ok} phones in {elapsed:.1f}s = {tally.ok / elapsed:.0f} "
            f"phones/s ({2 * tally.ok / elapsed:.0f} REGISTER/s with the 401s), "
            f"{tally.failed} failed"
        )
        per_binding = await memory_per_binding(store, phones)
        print(f"Redis per binding: {per_binding:.0f} bytes (AoR hash + expiry set share)")
        print(
            f"Redis per live nonce (nonce-count key): {await nonce_memory(store, phones):.0f} bytes"
        )
        tally = Tally()
        deadline = time.perf_counter() + args.seconds
        started = time.perf_counter()
        rounds = 0
        while time.perf_counter() < deadline:
            await register_all(phones, buses, args.concurrency, challenge=False, tally=tally)
            rounds += 1
        elapsed = time.perf_counter() - started
        print(
            f"refresh: {tally.ok} REGISTER in {elapsed:.1f}s ({rounds} rounds) = "
            f"{tally.ok / elapsed:.0f} REGISTER/s sustained, {tally.failed} failed"
        )
    finally:
        registrar.terminate()
        await registrar.wait()
        for bus in buses:
            await bus.close()
        await buses[0].delete_topology()
        await store.delete_namespace()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--edges", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32, help="registrar consumers")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
