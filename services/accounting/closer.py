"""Closing calls whose BYE never came: ``timeout`` after the longest silence allowed.

A call answered on an edge that then died, or whose BYE event was lost, would
stay open for ever.  Each round stores a timeout close (an event of its own,
:class:`~services.accounting.fold.TimeoutClose`) for every open attempt with
no sign of life for ``max_call_duration`` seconds, through the same
store-and-refold path as the edges' events: the record becomes complete with
disposition ``timeout``, its duration up to the last sign of life.  A BYE that
comes later still wins (the record changes, its version grows).  Several
instances may close the same call: the close is stored once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from services.accounting import metrics
from services.accounting.store import Applied, RecordStore


class TimeoutCloser:
    def __init__(
        self,
        store: RecordStore,
        announce: Callable[[Sequence[Applied]], Awaitable[None]],
        max_call_duration: float,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.announce = announce
        self.max_call_duration = max_call_duration
        self.log = log
        self.clock = clock

    async def round(self) -> int:
        """Close every stale open call; refresh the open-calls gauge. Returns how many closed."""
        closed = 0
        while True:
            now = self.clock()
            stale = await self.store.stale(now - self.max_call_duration)
            for call_id, from_tag in stale:
                applied = await self.store.close_timed_out(call_id, from_tag, now)
                if not applied.duplicate:
                    closed += 1
                    metrics.TIMED_OUT.inc()
                    metrics.RECORDS_WRITTEN.inc(sum(s.changed for s in applied.records))
                await self.announce([applied])
            if len(stale) < self.store.STALE_BATCH:
                break
        metrics.OPEN_CALLS.set((await self.store.counts()).get("open", 0))
        if closed:
            self.log.info("closed %d call(s) without a sign of life as timeout", closed)
        return closed
