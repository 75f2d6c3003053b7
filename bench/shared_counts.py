"""What counting pike with the cluster costs per message: the worker's CPU and Redis round trips.

Run ``python -m bench.shared_counts [--messages N]`` (or ``python -m bench shared_counts``)
against the Redis of the environment (``CALLMESH_REDIS_URL``, a fresh namespace,
removed afterwards). One edge worker's flood detector is fed ``N`` requests on a
simulated clock at ``--rate`` a second, as the worker's loop would: each request
``check``-ed, and with sharing on, a batch exchanged with Redis
(``FloodShareRunner.exchange``, a real round trip) every interval of simulated
time or when the detector asks for one sooner (no sooner than ``MIN_GAP``). Two
traffic shapes: ``calls`` (2,000 phones, each well under the limit) and ``flood``
(one stranger at half the traffic, until blocked, among the phones); pike's default
settings (30 requests in 2 s). Printed per
message: the client's CPU (µs: the checks and the exchanges' Python side) and
round trips. Then ``least_calls``: ``--messages`` calls at ``--rate`` a second
(simulated) over a set of 8 destinations, each chosen (`SetSelector` reads
``ActiveCalls.of_set``), sent and ended after 200 calls, with the worker's counts
exchanged (``CallCountsRunner.exchange``, a real round trip) every 0.5 s of simulated
time. Runs alternate off/on; the medians of ``--repeats`` are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import redis.asyncio as aioredis

from services.edge.destinations import ActiveCalls
from services.edge.protection import FloodDetector, FloodSettings
from services.edge.runtime.call_counts import CallCountsRunner
from services.edge.runtime.flood_share import MIN_GAP, FloodShareRunner
from shared.dispatcher import Call, Dispatcher, DispatcherSet, SetMember
from shared.dispatcher.loads import SharedCallCounts
from shared.protection.flood_counts import FloodCounts
from shared.store import Store

REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
INTERVAL = 0.1
PHONES = 2000
FLOODER = "198.51.100.66"


def sources(messages: int, shape: str) -> list[str]:
    """Who sends each request: phones in turn, and in ``flood`` every other one the flooder."""
    phones = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(PHONES)]
    if shape == "calls":
        return [phones[n % PHONES] for n in range(messages)]
    return [FLOODER if n % 2 else phones[n // 2 % PHONES] for n in range(messages)]


async def run(
    counts: FloodCounts, shared: bool, hosts: list[str], rate: float
) -> tuple[float, int]:
    """CPU seconds for the requests (and their exchanges), and the round trips made."""
    detector = FloodDetector(FloodSettings())
    runner = None
    due = [False]
    if shared:
        runner = FloodShareRunner(counts, detector, INTERVAL, asyncio.get_running_loop())
        detector.on_due = lambda: due.__setitem__(0, True)  # the simulated clock decides
    trips, last = 0, 0.0
    cpu = time.process_time()
    for n, host in enumerate(hosts):
        now = n / rate
        detector.check(host, now)
        if runner and now - last >= MIN_GAP and (due[0] or now - last >= INTERVAL):
            due[0] = False
            last = now
            await runner.exchange()
            trips += 1
    return time.process_time() - cpu, trips


FARM = DispatcherSet(
    algorithm="least_calls",
    destinations=tuple(SetMember(uri=f"sip:box{n}.example.com") for n in range(8)),
)
DISPATCH_INTERVAL = 0.5


async def dispatch(
    counts: SharedCallCounts, shared: bool, calls: int, rate: float
) -> tuple[float, int]:
    """CPU seconds for ``calls`` least_calls choices (and their exchanges), and round trips."""
    active = ActiveCalls()
    runner = CallCountsRunner(counts, active, DISPATCH_INTERVAL, asyncio.get_running_loop())
    dispatcher = Dispatcher("farm", FARM)
    trips, last = 0, 0.0
    cpu = time.process_time()
    for n in range(calls):
        now = n / rate
        uri = dispatcher.order(Call(), active_calls=active.of_set("farm"))[0].uri
        active.branch_sent("farm", uri, "INVITE", f"c{n}", now)
        active.call_ended(f"c{n - 200}")
        if shared and now - last >= DISPATCH_INTERVAL:
            last = now
            await runner.exchange()
            trips += 1
    return time.process_time() - cpu, trips


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_counts", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests a second, simulated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    store = Store(aioredis.Redis.from_url(REDIS_URL), f"bench-pike-{uuid.uuid4().hex[:8]}")
    counts = FloodCounts(store)
    try:
        await run(counts, True, sources(2000, "calls"), args.rate)  # warm: script, connection
        print(
            f"{args.messages} requests at {args.rate:.0f}/s (simulated), medians of {args.repeats}"
        )
        print("| traffic | counts | CPU µs/message | round trips/message |")
        print("| --- | --- | ---: | ---: |")
        for shape in ("calls", "flood"):
            hosts = sources(args.messages, shape)
            figures: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
            for _ in range(args.repeats):
                for shared in (False, True):  # alternating, so load drifts hit both
                    await store.delete_namespace()
                    figures[shared].append(await run(counts, shared, hosts, args.rate))
            for shared in (False, True):
                cpu = statistics.median(c for c, _ in figures[shared]) * 1e6 / args.messages
                trips = statistics.median(t for _, t in figures[shared]) / args.messages
                name = "shared (batches)" if shared else "per worker"
                print(f"| {shape} | {name} | {cpu:.2f} | {trips:.4f} |")
        calls = SharedCallCounts(store, "bench:1", ttl=3 * DISPATCH_INTERVAL)
        dispatched: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for shared in (False, True):
                dispatched[shared].append(await dispatch(calls, shared, args.messages, args.rate))
        for shared in (False, True):
            cpu = statistics.median(c for c, _ in dispatched[shared]) * 1e6 / args.messages
            trips = statistics.median(t for _, t in dispatched[shared]) / args.messages
            name = "shared (every 0.5 s)" if shared else "per worker"
            print(f"| least_calls, per call | {name} | {cpu:.2f} | {trips:.4f} |")
    finally:
        await store.delete_namespace()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
