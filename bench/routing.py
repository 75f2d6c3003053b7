"""Routing benchmark: a million-rule rate deck through the API, into an edge, and lookups.

Run: ``.venv/bin/python -m bench.routing [--rules N] [--repeats R]`` against the
RabbitMQ and Redis of the environment (fresh namespace, removed afterwards).

The routing service runs in this process; the edge cache runs in a child process
(``--edge NAMESPACE``), as in production, so its load does not share a GIL with
the service. Reported: the import time, the time until the edge serves the new
table (monotonic clock, shared by both processes), the edge index's memory
(tracemalloc over a separate load, and the process's RSS), and lookup cost with
the four-rule seed table versus the deck, on the same numbers for both: a
uniformly random set and a skewed (Zipf-like) mix. Both tables have a default
route, so every lookup is a full one. The edge keeps the seed's index beside
the deck's, and the two take turns every thousand lookups, so that a ratio
compares the same stretch of time; each figure is the median over repeats.
Lookups are timed alone and, as ``+use``, together with what the proxy then
reads of the answer (the usable hops' numbers and addresses, the rule id): the
route reads its rule lazily, so only the second shows the whole cost of a call.
RSS is read after a ``gc.collect()``; a reload (resync) builds the new index
beside the old one, and its high-water mark is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.memory import describe, over_budget, read_costs
from services.routing.service import RoutingService
from shared.api.app import create_app
from shared.bus.amqp import AmqpBus
from shared.routing_table.cache import IndexRoutes, RoutingCache
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store

ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = os.environ.get("CALLMESH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
HEADER = "id,group,prefix,priority,gateways\n"
SEED = {
    "1": ("1407", "1;2"),
    "2": ("44", "2"),
    "3": ("33", "1;2"),
    "4": ("91", "2;1"),
    "default": ("", "1"),
}
Figures = dict[str, float]


def deck(rules: int, rng: random.Random) -> str:
    lines = [HEADER, "default,0,,0,1\n"]
    for n in range(rules - 1):
        digits = rng.randint(3, 11)
        prefix = f"{rng.randrange(10**digits):0{digits}d}"
        lines.append(f"r{n},0,{prefix},0,{'1;2' if n % 2 else '2;1'}\n")
    return "".join(lines)


def number_sets(count: int, seed: int = 1) -> dict[str, list[str]]:
    """Uniform 11-digit numbers, and a Zipf-like mix (s=1.1) over as many distinct ones."""
    rng = random.Random(seed)
    uniform = [str(rng.randrange(10**10, 10**11)) for _ in range(count)]
    weights = [1 / rank**1.1 for rank in range(1, count + 1)]
    return {"uniform": uniform, "zipf": rng.choices(uniform, weights, k=count)}


def proxy_use(cache: IndexRoutes) -> Callable[[str], object]:
    """A lookup plus what the proxy reads of its answer (usable hops, their numbers, the rule)."""

    def use(number: str) -> object:
        route = cache.lookup(number)
        if route is None:
            return None
        return [(hop.number, hop.gateway.address, route.rule_id) for hop in route.usable()]

    return use


CHUNK = 1000
"""Lookups a table makes before the other takes its turn (a few milliseconds)."""


def timed(numbers: list[str], lookup: Callable[[str], object], costs: list[int]) -> None:
    """Append the cost (ns) of ``lookup`` for each number, each call timed alone."""
    clock = time.perf_counter_ns
    for number in numbers:
        start = clock()
        lookup(number)
        costs.append(clock() - start)


def paired_costs(
    tables: dict[str, IndexRoutes], numbers: dict[str, list[str]], repeats: int
) -> dict[str, dict[str, Figures]]:
    """Per number mix, ``lookup`` alone and with the proxy's reads (``+use``): each
    table's median and p99 (medians over ``repeats`` passes), and each table's cost
    over the first one's (the median of the passes' ratios).

    Why interleaved: the machine's speed drifts by tens of percent within seconds
    (shared hosts), so within a pass the tables take turns every :data:`CHUNK`
    lookups and both are timed over the same stretch of time.
    """
    found: dict[str, dict[str, Figures]] = {}
    first = next(iter(tables))
    for name, mix in numbers.items():
        for kind, use in ((name, _lookup), (f"{name}+use", proxy_use)):
            lookups = {label: use(routes) for label, routes in tables.items()}
            passes: dict[str, list[tuple[float, float]]] = {label: [] for label in tables}
            for _ in range(repeats):
                costs: dict[str, list[int]] = {label: [] for label in tables}
                for start in range(0, len(mix), CHUNK):
                    for label, lookup in lookups.items():
                        timed(mix[start : start + CHUNK], lookup, costs[label])
                for label, spent in costs.items():
                    spent.sort()
                    median, p99 = statistics.median(spent), spent[int(len(spent) * 0.99)]
                    passes[label].append((median / 1000, p99 / 1000))
            found[kind] = {}
            for label, runs in passes.items():
                routed = sum(tables[label].lookup(number) is not None for number in mix)
                ratios = [run[0] / base[0] for run, base in zip(runs, passes[first], strict=True)]
                found[kind][label] = {
                    "median": statistics.median(run[0] for run in runs),
                    "p99": statistics.median(run[1] for run in runs),
                    "ratio": statistics.median(ratios),
                    "routed": routed / len(mix),
                }
    return found


def _lookup(routes: IndexRoutes) -> Callable[[str], object]:
    return routes.lookup


def rss_mib(field: str = "VmRSS") -> float:
    """The process's resident memory now (``VmHWM``: its high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def edge(namespace: str, rules: int, lookups: int, repeats: int) -> None:
    """The child: an edge's routing cache; reports to the parent as JSON lines on stdout."""
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    bus = AmqpBus(RABBITMQ_URL, namespace, "edge", "bench")
    await bus.start()
    cache = RoutingCache(store, bus)
    try:
        await cache.start()
        seeded = IndexRoutes()
        seeded.index, seeded.health = cache.index, cache.health
        gc.collect()
        rss_before = rss_mib()
        report("seeded", version=cache.version)
        while len(cache.index) < rules:  # noqa: ASYNC110 - the cache has no version signal
            await asyncio.sleep(0.005)
        report("loaded", at=time.monotonic(), version=cache.version, rules=len(cache.index))
        gc.collect()
        rss_after = rss_mib()
        tables = {"4 rules": seeded, f"{rules:,} rules": cache}
        costs = paired_costs(tables, number_sets(lookups), repeats)
        reloaded, _ = await cache.load()
        peak = rss_mib("VmHWM") - rss_before
        del reloaded
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        index, _ = await cache.load()
        traced = (tracemalloc.get_traced_memory()[0] - before) / 2**20
        tracemalloc.stop()
        del index
        report(
            "done",
            reads={str(size): cost for size, cost in read_costs().items()},
            lookups=costs,
            traced_mib=traced,
            rss_growth_mib=rss_after - rss_before,
            reload_peak_mib=peak,
        )
    finally:
        await cache.stop()
        await bus.close()
        await store.close()


async def read_event(child: asyncio.subprocess.Process, wanted: str) -> dict[str, Any]:
    assert child.stdout is not None
    while line := await child.stdout.readline():
        event: dict[str, Any] = json.loads(line)
        if event["event"] == wanted:
            return event
    raise RuntimeError(f"the edge process ended before reporting {wanted!r}")


async def run(rules: int, lookups: int, repeats: int) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    settings = Settings(namespace=namespace, rabbitmq_url=RABBITMQ_URL, redis_url=REDIS_URL)
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    bus = AmqpBus(RABBITMQ_URL, namespace, "routing", "bench")
    await bus.start()
    service = RoutingService(Runtime(settings, bus, store, logging.getLogger("bench")))
    await service.start()
    app = create_app("bench", service.routers(), [], None)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    child: asyncio.subprocess.Process | None = None
    try:
        for gateway in ("1", "2"):
            await client.put(
                f"/v1/gateways/{gateway}", json={"address": f"sip:gw{gateway}.example"}
            )
        seed = HEADER + "".join(f"{rid},0,{pre},0,{gws}\n" for rid, (pre, gws) in SEED.items())
        await client.post("/v1/rules:import", params={"mode": "replace"}, content=seed)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.routing",
            "--edge",
            namespace,
            f"--rules={rules}",
            f"--lookups={lookups}",
            f"--repeats={repeats}",
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        await read_event(child, "seeded")

        body = deck(rules, random.Random(2))
        started = time.monotonic()
        reply = await client.post(
            "/v1/rules:import", params={"mode": "replace"}, content=body, timeout=600
        )
        imported = time.monotonic()
        reply.raise_for_status()
        del body
        loaded = await read_event(child, "loaded")
        done = await read_event(child, "done")
        await child.wait()

        print(f"rules: {rules:,} (loaded by the edge: {loaded['rules']:,})")
        print(f"import through the API: {imported - started:.1f} s (target <= 60 s)")
        print(
            f"edge cache ready after the import: {loaded['at'] - imported:.1f} s (target <= 30 s)"
        )
        print(
            f"edge index memory: {done['traced_mib']:.0f} MiB traced, "
            f"RSS growth {done['rss_growth_mib']:.0f} MiB (target <= 400 MiB); "
            f"peak during a reload {done['reload_peak_mib']:.0f} MiB (old and new index)"
        )
        for mix, figures in done["lookups"].items():
            for name, cost in figures.items():
                print(
                    f"lookups ({mix}), {name}: median {cost['median']:.2f} us, "
                    f"p99 {cost['p99']:.2f} us ({cost['routed']:.0%} routed)"
                )
            print(f"median ratio ({mix}): {cost['ratio']:.2f} (target <= 1.15, and <= 5 us)")
        reads = {int(size): cost for size, cost in done["reads"].items()}
        print(describe(reads))
        budget = 0.15 * done["lookups"]["uniform"]["4 rules"]["median"] * 1000
        print(over_budget(reads, budget))
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await service.stop()
        await client.aclose()
        await bus.close()
        await bus.delete_topology()
        await store.delete_namespace()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rules", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--edge", metavar="NAMESPACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.edge:
        asyncio.run(edge(args.edge, args.rules, args.lookups, args.repeats))
    else:
        asyncio.run(run(args.rules, args.lookups, args.repeats))


if __name__ == "__main__":
    main()
