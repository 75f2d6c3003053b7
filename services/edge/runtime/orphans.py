"""Adopting the outbox journals that no worker of this edge runs on any more.

Why: each worker publishes what its own slot kept when it starts (`publisher.recover`),
so the call events a worker dies with go out when a worker of that index starts again.
A slot no worker will claim again — an edge restarted with fewer workers
(``CALLMESH_EDGE_WORKERS`` from 4 to 2), a spare slot a second edge on the same directory
used once — would keep its events for ever, and their calls' records would never
complete.  Once every worker of the edge serves (each holding its own slot), the edge's
first process takes every slot nobody holds, publishes what it kept as the slot's own
worker would have (confirmed by the broker, the segments deleted after), and lets it go.
Publishing an event twice is harmless (the accounting service keeps each once); what is
not confirmed within `ADOPT_WITHIN` stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Final

from services.edge.runtime.journal import SLOT_PREFIX, Journal
from services.edge.runtime.publisher import EventPublisher
from shared.bus import Bus

log = logging.getLogger("callmesh.edge")

ADOPT_WITHIN: Final = 30.0
"""Seconds one adopted slot's events may take to be confirmed."""


async def adopt_orphans(
    root: Path, bus: Bus, *, batch: int, max_bytes: int, within: float = ADOPT_WITHIN
) -> int:
    """Publish what every slot under `root` that no live process holds kept; how many."""
    adopted = 0
    for directory in await asyncio.to_thread(_slots, root):
        journal = Journal.take(directory, max_bytes)
        if journal is None:
            continue  # a live worker's (this edge's, or another edge's on the directory)
        publisher = EventPublisher(bus, batch=batch, journal=journal)
        count = publisher.recover()
        await publisher.stop(drain=within)  # lets the slot go: emptied if all were confirmed
        left = journal.unsettled
        if count:
            log.info(
                "edge outbox %s: %d call events of a worker no longer run published%s",
                directory,
                count - left,
                f", {left} not confirmed (kept for the next start)" if left else "",
            )
        adopted += count - left
    return adopted


def _slots(root: Path) -> list[Path]:
    return sorted(path for path in root.glob(f"{SLOT_PREFIX}*") if path.is_dir())
