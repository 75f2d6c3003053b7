from __future__ import annotations

import asyncio

from bench.proxy.runtime_calls import RuntimeCalls
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBus
from shared.contracts.calls import CallEventBatch
from tests.shared.bus.support import until


async def test_a_call_goes_through_the_runtime_and_its_events_are_published() -> None:
    """The benchmark's call completes over real sockets (each step asserts what came), and
    the core's call events reach the bus, in a batch as an edge's do (this one sent as its
    linger ends, not full): what the benchmark times is a whole call."""
    bench = RuntimeCalls(asyncio.get_running_loop())
    accounting = MemoryBus(bench.broker, "bench", "accounting", "accounting")
    seen: list[str] = []

    async def handle(envelope: Envelope) -> None:
        assert envelope.type == CallEventBatch.routing_key
        seen.extend(event.type for event in envelope.payload(CallEventBatch).events)

    await accounting.start()
    await accounting.subscribe(["edge.call.#"], handle)
    await bench.start()
    try:
        for n in range(3):
            await asyncio.wait_for(bench.call(n), 5)
        assert bench.proxy.next_deadline() is not None  # its transactions linger
        await until(lambda: seen.count("edge.call.ended") == 3)
    finally:
        await bench.stop()
        await accounting.close()
