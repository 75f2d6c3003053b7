"""The asyncio side of the cluster's flood counts: one batch every interval, or sooner.

The sans-IO side (`services.edge.protection.flood.FloodDetector`) counts and
decides; this sends its batch (`FloodDetector.batch`) to Redis
(`shared.protection.flood_counts`) and applies the answer. A batch goes every
``interval`` seconds (empty too: it brings the blocks other workers decided), or
as soon as the detector asks (a source near the limit), but never sooner than
``MIN_GAP`` after the previous one (longer after a big one: ``SOURCES_PER_SECOND``)
and never two at once: however fast requests come, a worker makes at most
``1 / MIN_GAP`` round trips a second.

Redis away: the batch is dropped (each worker counts on its own meanwhile, as
before sharing), one log line per outage; a call is never refused for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from redis.exceptions import RedisError

from services.edge.protection import FloodDetector
from services.edge.runtime.exchanges import ExchangeLoop
from shared.protection.flood_counts import FloodCounts

log = logging.getLogger("callmesh.edge.protection")

MIN_GAP: Final = 0.02
"""Seconds between two batches at least."""
SOURCES_PER_SECOND: Final = 2000
"""Sources a worker sends a second at most: a spoofed-source flood (each source new, a few
requests each) would otherwise make every worker send 50 full batches a second and keep
Redis busy with keys no one reads; past it a batch waits (the sources left out are
counted locally meanwhile)."""


def pause_after(sent: int) -> float:
    """Seconds to wait after a batch of `sent` sources before the next one."""
    return max(MIN_GAP, sent / SOURCES_PER_SECOND)


class FloodShareRunner(ExchangeLoop):
    def __init__(
        self,
        counts: FloodCounts,
        detector: FloodDetector,
        interval: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__("flood counts", log, loop)
        self.counts = counts
        self.detector = detector
        self.interval = interval
        self._due = asyncio.Event()
        self._cursor: int | None = None
        detector.share(interval)
        detector.on_due = self._due.set

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):  # not wait_for: see `ExchangeLoop`
                    await self._due.wait()
            self._due.clear()
            await asyncio.sleep(pause_after(await self.exchange()))

    async def exchange(self) -> int:
        """Send the detector's batch and apply the answer (one round trip); how many sources
        it carried."""
        detector = self.detector
        batch = detector.batch()
        flood = detector.settings
        try:
            async with asyncio.timeout(max(self.interval, 1.0)):  # see `ExchangeLoop`
                answer = await self.counts.exchange(
                    batch,
                    period=flood.period,
                    limit=flood.limit,
                    block_time=flood.block_time,
                    since_ms=self._cursor,
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._failed(error, "each worker counts alone")
            detector.forget_cluster(batch)
            return len(batch)
        self._answered()
        self._cursor = answer.cursor_ms
        detector.apply(answer.windows, answer.blocks, self._loop.time(), answer.started)
        return len(batch)
