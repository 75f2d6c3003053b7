"""Call ends for the fraud counts: the accounting service's completed records, consumed from
the ``fraud.calls`` queue.

Why the records and not the edges' BYEs: a record is complete whichever edge
saw the BYE (or none did: the accounting service closes a call whose end was
never seen), with the billable seconds already folded from the call's events.
Each completed call frees its concurrent slot under every fraud rule it was
counted for and adds its minutes; a second completion of the same call (a
late BYE after a timeout close) finds nothing left to do. The minute
thresholds a call's end reaches are published as ``fraud.threshold.…``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from pydantic import ValidationError
from redis.exceptions import RedisError

from shared.bus import Bus, DeadLetter, Envelope, Requeue, WorkMessage
from shared.contracts.accounting import CallRecord, CdrCompleted, CdrCompletedBatch
from shared.fraud.events import threshold_event
from shared.fraud.store import FraudStore

log = logging.getLogger("callmesh.routing.fraud")

RETRY_DELAY: Final = 1.0


class CallEnds:
    def __init__(self, fraud: FraudStore, bus: Bus) -> None:
        self._fraud = fraud
        self._bus = bus

    async def __call__(self, message: WorkMessage) -> None:
        """Count the end of each record the message completes (one, or a batch of them)."""
        try:
            envelope = Envelope.from_bytes(message.body)
            if envelope.type == CdrCompletedBatch.routing_key:
                completed = envelope.payload(CdrCompletedBatch).completed
            else:
                completed = [envelope.payload(CdrCompleted)]
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise DeadLetter(
                f"not an {CdrCompleted.routing_key}: {where}: {first['msg']}"
            ) from None
        # A batch that must wait is taken again whole: a call end already counted
        # finds nothing left to do the second time.
        for each in completed:
            await self._count(each.record)

    async def _count(self, record: CallRecord) -> None:
        try:
            account, verdict = await self._fraud.call_ended(
                record.call_id, record.billable_seconds / 60
            )
        except (RedisError, OSError) as error:
            log.warning("fraud: call end of %s not counted yet: %s", record.call_id, error)
            await asyncio.sleep(RETRY_DELAY)  # Redis away: no spinning on the message
            raise Requeue from None
        minute = self._fraud.minute_ms / 1000
        events = [
            threshold_event(crossing, account, record.call_id, "routing", minute)
            for crossing in verdict.crossings
        ]
        if events:
            await self._bus.publish_many(events)
