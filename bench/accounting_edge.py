"""The accounting benchmark's live load and its billing system, in a process of their own.

Why apart: in the benchmark's process the publisher and the subscriber reading completions
took the same core and event loop as the service they measure, so the lag at a high rate was
the three sharing a loop rather than the service keeping up; an edge and a billing system are
other processes (other machines) in any deployment.

    python -m bench.accounting_edge NAMESPACE CALLS RATE BATCH

places CALLS answered calls (`bench.accounting.call_events`, the BYE last) at RATE calls/s,
paced by the clock: each tick sends every call then due, its events alone (BATCH 1) or in
``edge.call.batch`` messages of BATCH; and meanwhile takes every ``accounting.cdr.completed``
(or ``.batch``). Prints one JSON line: the rate achieved, and the lag from each call's sending
(its BYE included) to its completion, in ms: the median and the 99th percentile.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import uvloop

from bench.accounting import RABBITMQ_URL, call_events
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.accounting import CdrCompleted, CdrCompletedBatch
from shared.contracts.call_event_json import written_batch_of


async def place(namespace: str, calls: int, rate: float, batch: int) -> dict[str, Any]:
    edge = AmqpBus(RABBITMQ_URL, namespace, "edge", "edge-live")
    billing = AmqpBus(RABBITMQ_URL, namespace, "billing", "billing-live")
    sent: dict[str, float] = {}
    lags: list[float] = []
    done = asyncio.Event()

    async def on_completed(envelope: Envelope) -> None:
        if envelope.type == CdrCompletedBatch.routing_key:
            completed = envelope.payload(CdrCompletedBatch).completed
        else:
            completed = [envelope.payload(CdrCompleted)]
        for record in (each.record for each in completed):
            at = sent.pop(record.call_id, None)
            if at is not None:
                lags.append((time.perf_counter() - at) * 1000)
        if len(lags) == calls:
            done.set()

    try:
        await edge.start()
        await billing.start()
        await billing.subscribe([f"{CdrCompleted.routing_key}.#"], on_completed)
        placed, start = 0, time.perf_counter()
        while placed < calls:
            due = min(calls, int((time.perf_counter() - start) * rate) + 1)
            events = [e for n in range(placed, due) for e in call_events(f"live-{n}", time.time())]
            stamp = time.perf_counter()
            sent.update((f"live-{n}", stamp) for n in range(placed, due))
            for at in range(0, len(events), batch):
                chunk = events[at : at + batch]
                await edge.publish(chunk[0] if batch == 1 else written_batch_of(chunk))
            placed = due
            await asyncio.sleep(max(0.0, start + placed / rate - time.perf_counter()))
        placing = time.perf_counter() - start
        async with asyncio.timeout(120):
            await done.wait()
    finally:
        await edge.close()
        await billing.close()
    ms = sorted(lags)
    return {
        "calls": len(ms),
        "rate": rate,
        "placed_per_s": round(calls / placing),
        "median": round(statistics.median(ms), 1),
        "p99": round(ms[max(0, round(len(ms) * 0.99) - 1)], 1),
    }


def main(argv: list[str]) -> int:
    namespace, calls, rate, batch = argv
    print(json.dumps(uvloop.run(place(namespace, int(calls), float(rate), int(batch)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
