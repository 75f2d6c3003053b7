"""What fraud screening costs per call: the edge's CPU and Redis's work, rules off and on.

Run ``python -m bench.fraud [--calls N]`` (or ``python -m bench fraud``) against the
Redis of the environment (``CALLMESH_REDIS_URL``, a fresh namespace, removed
afterwards). Each call is screened as an edge worker does it: the rules that
watch its account looked up in memory (``FraudIndex.query``), then, if any,
one ``FraudStore.check`` script; "off" is an account no rule watches (no
round trip), one rule setting calls per minute only, one rule with all four
thresholds, five rules with all four of which every one matches the number.
Levels are out of reach, so no call is refused and every call is counted in
full. Printed, per call: the client's CPU (µs: the lookup, the script call,
the reply) and wall time, and Redis's commands and its CPU (``INFO
commandstats``: other clients of the same Redis at the same moment count too,
so run it on a quiet one). A ``PING`` round trip is the yardstick of this
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis

from bench.limits import commandstats
from shared.fraud.rules import METRICS, FraudIndex, FraudRuleBody
from shared.fraud.store import FraudStore
from shared.store import Store

REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
ACCOUNT = "subscriber:alice@example.com"
HIGH = {"warning": 999_998, "critical": 999_999}
"""Levels no run reaches: every call is counted, none refused."""


def index_of(rules: int, metrics: tuple[str, ...] = METRICS) -> FraudIndex:
    index = FraudIndex()
    for n in range(rules):
        body: dict[str, object] = {
            "caller": ACCOUNT if n == 0 else "any",
            "prefixes": ["1900", "1976", "44909", f"88{n}"],
            "block": "account",
        }
        index.put(f"r{n}", FraudRuleBody.model_validate(body | dict.fromkeys(metrics, HIGH)))
    return index


async def loop(fraud: FraudStore, index: FraudIndex, calls: int, tag: str) -> tuple[float, float]:
    """CPU and wall seconds for `calls` screenings."""
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(calls):
        query = index.query(f"{tag}{n}", ACCOUNT, "19005551234")
        if query is not None:
            await fraud.check(query)
    return time.process_time() - cpu, time.perf_counter() - wall


async def pings(redis: aioredis.Redis, calls: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await redis.ping()
    return time.process_time() - cpu, time.perf_counter() - wall


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fraud", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    store = Store(aioredis.Redis.from_url(REDIS_URL), f"bench-fraud-{uuid.uuid4().hex[:8]}")
    fraud = FraudStore(store)
    cases = (
        ("off", index_of(0)),
        ("1 rule, calls per minute only", index_of(1, ("calls_per_minute",))),
        ("1 rule", index_of(1)),
        ("5 rules", index_of(5)),
    )
    try:
        await loop(fraud, cases[-1][1], 200, "warm")  # the script loaded, the connection open
        rows = []
        for name, index in cases:
            before = await commandstats(store.redis)
            cpu, wall = await loop(fraud, index, args.calls, name)
            after = await commandstats(store.redis)
            commands = (after[0] - before[0] - 1) / args.calls  # less the INFO itself
            rows.append((name, cpu, wall, commands, (after[1] - before[1]) / args.calls))
        before = await commandstats(store.redis)
        cpu, wall = await pings(store.redis, args.calls)
        after = await commandstats(store.redis)
        rows.append(("PING (yardstick)", cpu, wall, 1.0, (after[1] - before[1]) / args.calls))
        per = 1e6 / args.calls
        print(f"{args.calls} calls screened per row (one account, number 19005551234)")
        header = "| rules | client CPU µs/call | wall µs/call | Redis commands/call"
        print(header + " | Redis CPU µs/call |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, cpu, wall, commands, redis_us in rows:
            print(
                f"| {name} | {cpu * per:.1f} | {wall * per:.1f} | {commands:.1f} | {redis_us:.1f} |"
            )
        print("Round trips per screened call: 1 (the script); its end adds one, off the SIP path.")
    finally:
        await store.delete_namespace()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
