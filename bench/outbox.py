"""What the edge's outbox journal costs per call event: on the call path, and in all.

Run ``python -m bench.outbox [--calls N] [--repeats R]`` (or ``python -m bench outbox``).
One edge worker's `EventPublisher` on the in-process bus (its publish serialises
the envelope as RabbitMQ's would; no network) is offered the seven events of ``N``
answered calls (`bench.accounting`'s: a failover to a second gateway), some 64 per loop
turn, with call events batched as the edge does (``CALLMESH_EDGE_EVENT_BATCH``'s default), the
journal off (memory only, as before the outbox) and on (a real directory under
``/tmp``: the settling marks, segment rotation, and one ``write()`` per call: each call's
events are offered as one UDP burst (`HELD`) whose end writes them, where the edge
measured some 1.4 writes a call at 1000 cps; without a burst it would be one per event),
alternated so load drifts hit both. Printed per event, the medians of ``R`` runs:
``offer`` (the call path: what the proxy's loop spends handing an event over,
the journal's encode and ``write()`` included) and ``all`` (the process's CPU for
offering, publishing and settling, to the stop that finds nothing left), in µs, and the
journal's bytes per event (its line; the settling marks add a few bytes per publish).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.accounting import call_events
from services.edge.runtime.journal import Journal
from services.edge.runtime.journal_lines import event_line
from services.edge.runtime.publisher import EventPublisher
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.call_event_json import written
from shared.contracts.calls import CallEvent
from shared.settings import Settings
from shared.sip.transport.udp import HELD

TURN = 64
"""Events offered per loop turn."""
BATCH: int = Settings.model_fields["edge_event_batch"].default
"""The edge's default batch, so the settling marks per publish are the edge's."""
T0 = 1_764_000_000.0


async def run(calls: list[list[CallEvent]], directory: Path | None) -> tuple[float, float]:
    """CPU seconds offering (each call's events as one burst), and CPU seconds in all."""
    bus = MemoryBus(MemoryBroker(), "bench", "edge", "edge-a")
    await bus.start()
    journal = None
    if directory is not None:
        journal = Journal.claim(directory, 0, 1 << 30)
        assert journal is not None
        journal.recover()
    publisher = EventPublisher(bus, batch=BATCH, journal=journal)
    offering = 0.0
    started = time.process_time()
    turn = max(1, TURN // len(calls[0]))
    for at in range(0, len(calls), turn):
        clock = time.process_time()
        for events in calls[at : at + turn]:
            with HELD:  # the burst's end writes the journal's lines in one write()
                for event in events:
                    publisher.offer(event)
        offering += time.process_time() - clock
        await asyncio.sleep(0)  # the loop turns: the senders publish and settle
    await publisher.stop()  # waits for the senders: every event published and settled
    spent = time.process_time() - started
    assert publisher.dropped == 0
    await bus.close()
    return offering, spent


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    calls = [call_events(f"{n:08x}@bench", T0 + n / 100) for n in range(args.calls)]
    events = [event for call in calls for event in call]
    root = Path(tempfile.mkdtemp(prefix="callmesh-bench-outbox-"))
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    try:
        await run(calls[:700], root / "warm")
        for n in range(args.repeats):
            for journaled in (False, True):
                directory = root / f"run-{n}" if journaled else None
                figures[journaled].append(await run(calls, directory))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    count = len(events)
    print(f"{args.calls} answered calls ({count} call events), medians of {args.repeats}")
    print("| journal | offer µs/event | all µs/event | journal bytes/event |")
    print("| --- | ---: | ---: | ---: |")
    size = statistics.mean(
        len(event_line(n, event, written(event)[1])) for n, event in enumerate(events, 1)
    )
    medians = {}
    for journaled in (False, True):
        runs = figures[journaled]
        offer = statistics.median(r[0] for r in runs) * 1e6 / count
        spent = statistics.median(r[1] for r in runs) * 1e6 / count
        medians[journaled] = (offer, spent)
        shown = f"{size:.0f}" if journaled else "0"
        print(f"| {'on' if journaled else 'off'} | {offer:.2f} | {spent:.2f} | {shown} |")
    ratio_offer = medians[True][0] / medians[False][0]
    ratio_all = medians[True][1] / medians[False][1]
    print(f"| on / off | {ratio_offer:.2f} | {ratio_all:.2f} | |")


if __name__ == "__main__":
    asyncio.run(main())
