"""The edge's event publisher against RabbitMQ on a busy loop: call events out per second.

Why: a publish is not paid in CPU alone but in turns of the loop (the sender's task, the
link's writer, the confirm's frame read, the sender again), and an edge worker at 2000
calls a second turns every 20 ms or so, each turn a burst of datagrams.  On an idle loop
the publisher confirmed some 180,000 events a second; in the edge at 2000 calls a second
its backlog grew past its bound, and call records were lost (docs/benchmarks.md, "The
publisher under load").  Here one `EventPublisher` on a real `AmqpBus` (a fresh namespace;
its exchange has no queue, as in `bench.proxy.run`) is offered the seven events of
``--calls`` answered calls at once, while the loop runs a callback that keeps it busy
``--turn-ms`` per turn, and the time to have every event confirmed is measured.  Printed per
turn length: the events confirmed (a run that cannot have them all confirmed fails), the
median of ``--repeat`` runs of events confirmed a second, and the loop's turns per message.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import uvloop

from bench.accounting import RABBITMQ_URL, call_events
from services.edge.runtime.publisher import EventPublisher
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.calls import WrittenCallEventBatch
from shared.contracts.event import Event
from shared.settings import Settings

TIMEOUT = 120.0
"""Seconds a run may take to have every event confirmed (else it fails, saying how many)."""


class BusyLoop:
    """A callback that holds the loop `turn` seconds and runs again at its next turn."""

    def __init__(self, turn: float) -> None:
        self.turn = turn
        self.turns = 0
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._loop.call_soon(self._busy)

    def stop(self) -> None:
        self._running = False

    def _busy(self) -> None:
        self.turns += 1
        end = time.perf_counter() + self.turn
        while time.perf_counter() < end:
            pass
        if self._running:
            self._loop.call_soon(self._busy)


async def drain(calls: int, turn: float) -> tuple[int, float, float]:
    """The events confirmed, how many a second, and the loop's turns per message; a run
    exits with an error unless every event is confirmed within `TIMEOUT`."""
    settings = Settings()
    bus = AmqpBus(RABBITMQ_URL, f"bench-publisher-{uuid.uuid4().hex[:8]}", "edge", "edge-b")
    await bus.start()
    try:
        publisher = EventPublisher(
            bus,
            max_backlog=10 * calls,
            batch=settings.edge_event_batch,
            linger=settings.edge_event_linger_ms / 1000,
        )
        events = [e for n in range(calls) for e in call_events(f"call-{n}", time.time())]
        messages = confirmed = 0
        publish = bus.publish
        all_confirmed = asyncio.Event()

        async def counted(event: Event, routing_key: str | None = None) -> Envelope:
            nonlocal messages, confirmed
            messages += 1
            envelope = await publish(event, routing_key)
            confirmed += event.count if isinstance(event, WrittenCallEventBatch) else 1
            if confirmed == len(events):
                all_confirmed.set()
            return envelope

        bus.publish = counted  # type: ignore[method-assign]
        for event in events:
            publisher.offer(event)
        busy = BusyLoop(turn)
        start = time.perf_counter()
        try:
            await asyncio.wait_for(all_confirmed.wait(), TIMEOUT)
        except TimeoutError:
            missing = f"{confirmed} of {len(events)} events confirmed in {TIMEOUT} s"
            raise SystemExit(missing) from None
        elapsed = time.perf_counter() - start
        busy.stop()
        return confirmed, confirmed / elapsed, busy.turns / messages
    finally:
        await bus.delete_topology()
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000, help="answered calls, 7 events each")
    parser.add_argument("--turn-ms", default="0,5,20", help="the busy callback's ms per turn")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for turn_ms in (float(text) for text in args.turn_ms.split(",")):
        runs = [uvloop.run(drain(args.calls, turn_ms / 1000)) for _ in range(args.repeat)]
        confirmed = min(run[0] for run in runs)
        rate = statistics.median(run[1] for run in runs)
        turns = statistics.median(run[2] for run in runs)
        per_message = f"{turns:.1f} turns a message" if turn_ms else "the loop otherwise idle"
        print(
            f"busy turns of {turn_ms:g} ms: {confirmed:,} call events confirmed,"
            f" {rate:,.0f} a second, {per_message}"
        )


if __name__ == "__main__":
    main()
