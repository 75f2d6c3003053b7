"""What an edge worker's start costs when the store holds 100,000 bindings: finding its own.

Run ``python -m bench.keepalive_start [--bindings N] [--edges E]`` (or
``python -m bench keepalive_start``) against the Redis of the environment
(``CALLMESH_REDIS_URL``, a fresh namespace, removed afterwards).  ``--bindings``
NAT'd bindings are written, spread evenly over ``--edges`` instances; then one
worker's keepalives read the store as at its start
(``shared.registrar.location.bindings_mentioning`` and the schedule), while a
ticker on the same event loop measures how late it gets to run: the longest
stall is how long SIP would wait behind the reading (on a loaded machine it
includes waiting for a core, hence also the most CPU one page took between
two yields).  Printed: wall and CPU seconds of the read, bindings found (this
edge's share), CPU per stored binding, the median and longest page, the
longest stall.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import redis.asyncio as aioredis

from services.edge.keepalive.schedule import KeepaliveSchedule, needs_keepalive
from shared.registrar.layout import aor_key
from shared.registrar.location import bindings_mentioning
from shared.registrar.model import Binding
from shared.store import Store

REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
TICK = 0.005
"""The ticker's period: a SIP datagram waiting behind the reading waits at most its stall."""


async def write(store: Store, count: int, edges: int) -> None:
    expires_at = time.time() + 3600
    for start in range(0, count, 5000):
        async with store.redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + 5000, count)):
                binding = Binding(
                    aor=f"sip:user{n}@example.com",
                    contact=f"sip:user{n}@192.168.{n // 250 % 250}.{n % 250 + 1}:5060",
                    expires_at=expires_at,
                    received=f"sip:203.0.113.{n % 250 + 1}:{10000 + n % 50000}",
                    transport="udp",
                    edge=f"edge-{n % edges}",
                    call_id=f"c{n}",
                    cseq=1,
                )
                pipe.hset(aor_key(store, binding.aor), binding.contact, binding.model_dump_json())
            await pipe.execute()


async def read(store: Store, instance: str) -> tuple[int, float, float, float, list[float]]:
    """Bindings watched, wall s, CPU s, longest stall of the loop (s), and the CPU each page
    took from a yield to the next (its SCAN step, replies, parsing and scheduling: s)."""
    schedule = KeepaliveSchedule(30.0, 120.0)
    loop = asyncio.get_running_loop()
    stall = 0.0
    done = False

    async def ticker() -> None:
        nonlocal stall
        while not done:
            before = loop.time()
            await asyncio.sleep(TICK)
            stall = max(stall, loop.time() - before - TICK)

    task = loop.create_task(ticker())
    await asyncio.sleep(TICK * 2)
    wall, cpu = time.monotonic(), time.process_time()
    pages, resumed = [], cpu
    async for page in bindings_mentioning(store, instance):
        for location in page:
            if needs_keepalive(location, instance):
                schedule.watch(location, loop.time())
        pages.append(time.process_time() - resumed)
        await asyncio.sleep(0)
        resumed = time.process_time()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    done = True
    await task
    return len(schedule), wall, cpu, stall, pages


async def run(count: int, edges: int) -> None:
    store = Store(aioredis.Redis.from_url(REDIS_URL), f"bench-ka-{uuid.uuid4().hex[:8]}")
    try:
        await write(store, count, edges)
        found, wall, cpu, stall, pages = await read(store, "edge-0")
    finally:
        await store.delete_namespace()
        await store.close()
    if found != len(range(0, count, edges)):
        raise SystemExit(f"found {found} bindings of edge-0, not {len(range(0, count, edges))}")
    print(f"{count} NAT'd bindings in Redis over {edges} edges; one worker of edge-0 starts")
    print(f"{'figure':<34}{'value':>12}")
    for name, value in {
        "bindings of this edge": float(found),
        "read wall s": wall,
        "read CPU s": cpu,
        "CPU µs per stored binding": cpu / count * 1e6,
        "median page CPU ms": statistics.median(pages) * 1000,
        "longest page CPU ms": max(pages) * 1000,
        "longest loop stall ms (wall)": stall * 1000,
    }.items():
        print(f"{name:<34}{value:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=4)
    options = parser.parse_args()
    asyncio.run(run(options.bindings, options.edges))


if __name__ == "__main__":
    main()
