from __future__ import annotations

import asyncio

from bench.proxy.runtime_calls import RuntimeCalls
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBus
from tests.shared.bus.support import until


async def test_a_call_goes_through_the_runtime_and_its_events_are_published() -> None:
    """The benchmark's call completes over real sockets (each step asserts what came), and
    the core's call events reach the bus: what the benchmark times is a whole call."""
    bench = RuntimeCalls(asyncio.get_running_loop())
    accounting = MemoryBus(bench.broker, "bench", "accounting", "accounting")
    seen: list[str] = []

    async def handle(envelope: Envelope) -> None:
        seen.append(envelope.type)

    await accounting.start()
    await accounting.subscribe(["edge.call.#"], handle)
    await bench.start()
    try:
        for n in range(3):
            await asyncio.wait_for(bench.call(n), 5)
        assert bench.proxy.next_deadline() is not None  # its transactions linger
        await until(lambda: sum(key.endswith(".ended") for key in seen) == 3)
    finally:
        await bench.stop()
        await accounting.close()
