"""The asyncio side of fraud screening: the Redis round trip per watched call, and the
``fraud.threshold.…`` events of the thresholds it reached.

The sans-IO side (`services.edge.policy.fraud.FraudScreen`) builds the query
and applies the verdict; this module asks Redis (`shared.fraud.store`). When
Redis does not answer in ``TIMEOUT`` the call goes on unscreened (fail open,
like the shared limits), with one log line per outage and the ``unknown``
metric. Every crossing is one event: a count passes each level once on its
way up, so events come once per level and window, not once per call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from redis.exceptions import RedisError

from services.edge import metrics
from services.edge.runtime.publisher import EventPublisher
from shared.fraud.events import threshold_event
from shared.fraud.rules import FraudQuery, FraudVerdict
from shared.fraud.store import FraudStore

log = logging.getLogger("callmesh.edge.fraud")

TIMEOUT: Final = 1.0


class FraudRunner:
    def __init__(self, store: FraudStore, publisher: EventPublisher, instance: str) -> None:
        self.store = store
        self._publisher = publisher
        self._instance = instance
        self._failing = False

    async def check(self, query: FraudQuery) -> FraudVerdict | None:
        try:
            async with asyncio.timeout(TIMEOUT):
                verdict = await self.store.check(query)
        except (RedisError, OSError, TimeoutError) as error:
            if not self._failing:
                log.warning("fraud counts unavailable, calls go on unscreened: %s", error)
            self._failing = True
            metrics.FRAUD_CHECKS["unknown"] += 1
            return None
        if self._failing:
            log.info("fraud counts available again")
            self._failing = False
        metrics.FRAUD_CHECKS["admitted" if verdict.admitted else "refused"] += 1
        for crossing in verdict.crossings:
            minute = self.store.minute_ms / 1000
            self._publisher.offer(
                threshold_event(crossing, query.account, query.call_id, self._instance, minute)
            )
        return verdict
