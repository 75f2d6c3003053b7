"""The asyncio side of the shared ``least_calls`` counts: one exchange every interval.

The sans-IO side (`services.edge.destinations.ActiveCalls`) counts this worker's
calls per destination and merges the others'; this sends its counts to Redis
(`shared.dispatcher.loads`) every ``interval`` seconds and hands the totals
back, once the worker has dispatched a call or a set balances by calls (``wanted``):
an edge without such sets makes no round trip. Redis away: after ``STALE_AFTER`` intervals without
an answer the worker balances on its own counts (one log line per outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from redis.exceptions import RedisError

from services.edge.destinations import ActiveCalls
from services.edge.runtime.exchanges import ExchangeLoop
from shared.dispatcher.loads import SharedCallCounts

log = logging.getLogger("callmesh.edge.dispatch")

STALE_AFTER: Final = 4
"""Intervals without an answer after which the others' counts are dropped."""


class CallCountsRunner(ExchangeLoop):
    def __init__(
        self,
        counts: SharedCallCounts,
        calls: ActiveCalls,
        interval: float,
        loop: asyncio.AbstractEventLoop,
        wanted: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__("least_calls counts", log, loop)
        self._wanted = wanted
        self.counts = counts
        self.calls = calls
        self.interval = interval
        self._answered_at = loop.time()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.calls.dispatched or self._wanted():
                await self.exchange()

    async def exchange(self) -> None:
        """Send this worker's counts, take the cluster's (one round trip)."""
        now = self._loop.time()
        sent = self.calls.own(now)
        try:
            async with asyncio.timeout(max(self.interval, 1.0)):  # see `ExchangeLoop`
                totals = await self.counts.exchange(sent)
        except (RedisError, OSError, TimeoutError) as error:
            self._failed(error, "balancing alone")
            if now - self._answered_at > STALE_AFTER * self.interval:
                self.calls.alone()
            return
        self._answered()
        self._answered_at = now
        self.calls.cluster(totals, sent)
