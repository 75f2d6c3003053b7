"""What the shared call limits cost per call: the edge's CPU and Redis's work, limits off and on.

Run ``python -m bench.limits [--calls N]`` (or ``python -m bench limits``) against the
Redis of the environment (``CALLMESH_REDIS_URL``, a fresh namespace, removed
afterwards). Each call is admitted and then freed as an edge worker does it:
``SharedLimits.acquire`` of a query with three limits (a peer's concurrent calls
and CPS, a subscriber's concurrent calls, a gateway's channel cap), then
``release``; "off" is the same loop without limits (no round trip). Then one CPS
limit as an edge worker's policy asks it (``CallLeases.query``, the script only
when it must), without and with a local allowance (``cps_allowance``: tokens
taken ahead, spent without a round trip). Printed, per call: the client's CPU
(µs: building the query, the script call, the reply), wall time, round trips, and
Redis's commands and its CPU (``INFO commandstats``, so other clients of the same
Redis at the same moment count too: run it on a quiet one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis

from services.edge.policy.call_limit_settings import CallLimitSettings
from services.edge.policy.limits import CallLeases
from shared.limits.model import Channel, Demand, LimitQuery
from shared.limits.store import SharedLimits
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Limits, Peer
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from shared.store import Store

ALLOWANCE = 10

REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
DEMANDS = (
    Demand("peer:acme", 1_000_000, 100_000),
    Demand("subscriber:alice@example.com", 1_000_000),
)
GATEWAYS = (Channel("gateway:gw1", (Demand("gateway:gw1", 1_000_000),)),)
INVITE = (
    b"INVITE sip:14075551234@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKb1\r\n"
    b"From: <sip:alice@10.0.0.5>;tag=a1\r\nTo: <sip:14075551234@192.0.2.10>\r\n"
    b"Call-ID: bench@10.0.0.5\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)
SOURCE = Destination("udp", "10.0.0.5", 5060)
MODES = {
    "off": "off",
    "three": "on (3 limits)",
    "cps": "CPS only (one peer)",
    "allowance": f"CPS only, cps_allowance {ALLOWANCE}",
}


class _Table:
    """The edge policy's view of a routing table holding one peer."""

    def __init__(self, allowance: int | None) -> None:
        self.index = RoutingIndex()
        limits = Limits(max_cps=100_000, cps_allowance=allowance)
        self.index.put("peer", "acme", Peer(addresses=("10.0.0.0/8",), limits=limits))


async def commandstats(redis: aioredis.Redis) -> tuple[int, int]:
    """(calls, CPU µs) of every command Redis ran so far (scripts' inner commands included)."""
    stats = await redis.info("commandstats")
    return (
        sum(int(stat["calls"]) for stat in stats.values()),
        sum(int(stat["usec"]) for stat in stats.values()),
    )


async def loop(limits: SharedLimits, calls: int, mode: str) -> tuple[float, float, int]:
    """CPU and wall seconds for `calls` admissions (and releases), and the round trips."""
    leases = CallLeases(CallLimitSettings(), _Table(ALLOWANCE if mode == "allowance" else None))
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    trips = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(calls):
        call_id = f"c{n}"
        if mode == "three":
            verdict = await limits.acquire(LimitQuery(call_id, DEMANDS, GATEWAYS))
            await limits.release(call_id, [d.entity for d in DEMANDS] + list(verdict.channels))
            trips += 2
        elif mode == "off":
            await limits.acquire(LimitQuery(call_id))
        else:  # as an edge worker asks: the policy's query, then the script if it must
            now = time.monotonic()
            query = leases.query(request, SOURCE, "acme", [], now)
            if query is not None:
                leases.apply(query, await limits.acquire(query), [], now)
                trips += 1
    return time.process_time() - cpu, time.perf_counter() - wall, trips


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    store = Store(aioredis.Redis.from_url(REDIS_URL), f"bench-limits-{uuid.uuid4().hex[:8]}")
    limits = SharedLimits(store)
    try:
        await loop(limits, 200, "three")  # warm: the script loaded, the connection open
        rows = []
        for mode, name in MODES.items():
            before = await commandstats(store.redis)
            cpu, wall, trips = await loop(limits, args.calls, mode)
            after = await commandstats(store.redis)
            per = 1e6 / args.calls
            commands = (after[0] - before[0] - 1) / args.calls  # less the INFO itself
            redis_us = (after[1] - before[1]) / args.calls
            row = (name, cpu * per, wall * per, trips / args.calls, commands, redis_us)
            rows.append(row)
        print(f"{args.calls} calls, each admitted (then freed: the 3 limits hold leases)")
        header = "| limits | client CPU µs/call | wall µs/call | round trips/call"
        print(header + " | Redis commands/call | Redis CPU µs/call |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, cpu_us, wall_us, trips, commands, redis_us in rows:
            print(
                f"| {name} | {cpu_us:.1f} | {wall_us:.1f} | {trips:.2f} | {commands:.1f}"
                f" | {redis_us:.1f} |"
            )
    finally:
        await store.delete_namespace()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
