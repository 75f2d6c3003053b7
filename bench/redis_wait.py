"""What waiting for a replica (Redis ``WAIT``) costs a write that must survive a failover.

Run ``python -m bench.redis_wait [--writes N] [--rounds R] [--concurrency C]`` (or
``python -m bench redis_wait``). It starts its own primary and replica
(``redis-server`` on free loopback ports, nothing on disk) and times route
changes as the routing service stores them (``RoutingStore.apply``: one Lua
script), without ``WAIT`` and with ``WAIT 1`` (``CALLMESH_REDIS_WAIT_REPLICAS``),
in alternating rounds so the machine's noise falls on both alike. Printed: the
median of the rounds' median latency per write, one writer at a time and
``--concurrency`` writers at once, and the ratio of the two modes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from deploy.labs.ports import free_port
from shared.routing_table.changes import Change
from shared.routing_table.model import Gateway
from shared.routing_table.store import RoutingStore
from shared.store import Store


def start(port: int, directory: Path, replica_of: int | None = None) -> subprocess.Popen[bytes]:
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory), "--dbfilename", f"{port}.rdb"]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def online(client: aioredis.Redis) -> None:
    for _ in range(500):
        try:
            info = await client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                return
        except (aioredis.RedisError, OSError):
            pass
        await asyncio.sleep(0.02)
    raise SystemExit("the replica did not come online")


async def round_of(store: Store, writes: int, concurrency: int) -> float:
    """Median seconds per route change, ``concurrency`` writers sharing ``writes``."""
    routing = RoutingStore(store)
    latencies: list[float] = []
    gateway = Gateway(address="sip:192.0.2.1:5060")

    async def writer(first: int) -> None:
        for n in range(first, writes, concurrency):
            started = time.perf_counter()
            await routing.apply([Change("upsert", "gateway", f"g{n}", gateway)])
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(writer(first) for first in range(concurrency)))
    return statistics.median(latencies)


async def run(writes: int, rounds: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-redis-wait-") as tmp:
        primary, replica = free_port(), free_port()
        processes = [start(primary, Path(tmp)), start(replica, Path(tmp), replica_of=primary)]
        client = aioredis.Redis(port=primary)
        try:
            await online(client)
            results: dict[tuple[int, int], list[float]] = {}
            for _ in range(rounds):
                for wait in (0, 1):
                    for writers in (1, concurrency):
                        store = Store(client, f"bench-{os.getpid()}", wait_replicas=wait)
                        median = await round_of(store, writes, writers)
                        results.setdefault((wait, writers), []).append(median)
            print(
                f"route changes, {writes} per round, {rounds} rounds; load {os.getloadavg()[0]:.1f}"
            )
            print("| writers | no WAIT (µs per write) | WAIT 1 (µs per write) | ratio |")
            print("| --- | --- | --- | --- |")
            for writers in (1, concurrency):
                plain = statistics.median(results[(0, writers)]) * 1e6
                waited = statistics.median(results[(1, writers)]) * 1e6
                print(f"| {writers} | {plain:,.0f} | {waited:,.0f} | x{waited / plain:.2f} |")
        finally:
            await client.aclose()
            for process in processes:
                process.terminate()
                process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.writes, args.rounds, args.concurrency))


if __name__ == "__main__":
    main()
