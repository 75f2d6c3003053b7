"""Routing benchmark: a million-rule rate deck through the API, into an edge, and lookups.

Run: ``.venv/bin/python bench/routing.py [--rules N]`` against the RabbitMQ and
Redis of the environment (fresh namespace, removed afterwards). Reports the
import time, the time until an edge cache serves the new table, the edge index's
memory (tracemalloc, measured on a separate load), and lookup cost (median and
p99, µs) with the deck versus the four-rule seed table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.edge.routing_cache import RoutingCache
from services.routing.service import RoutingService
from shared.api.app import create_app
from shared.bus.amqp import AmqpBus
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store

RABBITMQ_URL = os.environ.get("CALLMESH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
SEED = {"1": ("1407", "1;2"), "2": ("44", "2"), "3": ("33", "1;2"), "4": ("91", "2;1")}
SEED_PREFIXES = [prefix for prefix, _ in SEED.values()]


def deck(rules: int, rng: random.Random) -> str:
    lines = ["id,group,prefix,priority,gateways"]
    for n in range(rules):
        digits = rng.randint(3, 11)
        lines.append(f"r{n},0,{rng.randrange(10**digits):0{digits}d},0,{'1;2' if n % 2 else '2;1'}")
    return "\n".join(lines) + "\n"


def lookup_costs(cache: RoutingCache, numbers: list[str]) -> tuple[float, float]:
    """Median and p99 of single lookups, in µs."""
    lookup, clock = cache.lookup, time.perf_counter_ns
    costs = []
    for _ in range(3):
        for number in numbers:
            start = clock()
            lookup(number)
            costs.append(clock() - start)
    costs.sort()
    return statistics.median(costs) / 1000, costs[int(len(costs) * 0.99)] / 1000


async def run(rules: int, lookups: int) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    settings = Settings(namespace=namespace, rabbitmq_url=RABBITMQ_URL, redis_url=REDIS_URL)
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    buses = [AmqpBus(RABBITMQ_URL, namespace, name, "bench") for name in ("routing", "edge")]
    for bus in buses:
        await bus.start()
    service = RoutingService(Runtime(settings, buses[0], store, logging.getLogger("bench")))
    await service.start()
    app = create_app("bench", service.routers(), [], None)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    edge = RoutingCache(store, buses[1])
    try:
        for gateway in ("1", "2"):
            await client.put(
                f"/v1/gateways/{gateway}", json={"address": f"sip:gw{gateway}.example"}
            )
        seed = "id,group,prefix,priority,gateways\n" + "".join(
            f"{rid},0,{prefix},0,{gws}\n" for rid, (prefix, gws) in SEED.items()
        )
        await client.post("/v1/rules:import", params={"mode": "replace"}, content=seed)
        await edge.start()
        rng = random.Random(1)
        # Numbers that route in each table, so both measure a full lookup (a miss is cheaper).
        seeded = [f"{rng.choice(SEED_PREFIXES)}{rng.randrange(10**8):08d}" for _ in range(lookups)]
        small = lookup_costs(edge, seeded)
        numbers = [f"{rng.randrange(10**11, 10**12)}" for _ in range(lookups)]

        body = deck(rules, rng)
        started = time.perf_counter()
        reply = await client.post(
            "/v1/rules:import", params={"mode": "replace"}, content=body, timeout=600
        )
        imported = time.perf_counter()
        reply.raise_for_status()
        version = reply.json()["version"]
        while edge.version < version:  # noqa: ASYNC110 - the cache has no version signal
            await asyncio.sleep(0.01)
        ready = time.perf_counter()
        large = lookup_costs(edge, numbers)
        routed = sum(edge.lookup(number) is not None for number in numbers)

        del body
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        index, _ = await edge.load()
        memory = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()

        print(f"rules: {rules:,} (loaded by the edge: {len(index):,})")
        print(f"import through the API: {imported - started:.1f} s (target <= 60 s)")
        print(f"edge cache ready after the import: {ready - imported:.1f} s (target <= 30 s)")
        print(f"edge index memory: {memory / 2**20:.0f} MiB (target <= 400 MiB)")
        print(f"lookups, 4 rules: median {small[0]:.2f} us, p99 {small[1]:.2f} us")
        print(
            f"lookups, {rules:,} rules: median {large[0]:.2f} us, p99 {large[1]:.2f} us "
            f"({routed / len(numbers):.0%} of numbers routed)"
        )
        print(f"median ratio: {large[0] / small[0]:.2f} (target <= 1.15, and <= 5 us)")
    finally:
        await edge.stop()
        await service.stop()
        await client.aclose()
        for bus in buses:
            await bus.close()
            await bus.delete_topology()
        await store.delete_namespace()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.rules, args.lookups))


if __name__ == "__main__":
    main()
