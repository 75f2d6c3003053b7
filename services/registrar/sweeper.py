"""Expiry of bindings: every registrar instance sweeps, each expiry is claimed (and announced) once.

Polling the expiry set a few times a second keeps the detection within a
second of the due time without keyspace notifications, which Redis would
deliver to every instance (and drop while one is disconnected).  The events
go through the instance's outbox, in one stream with its REGISTER events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from services.registrar.bindings import BindingStore
from services.registrar.outbox import EventOutbox
from shared.background import cancel_and_wait
from shared.contracts.registrar import BindingExpired

SWEEP_INTERVAL = 0.2
BATCH = 500


class ExpirySweeper:
    def __init__(
        self,
        bindings: BindingStore,
        outbox: EventOutbox,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bindings = bindings
        self.outbox = outbox
        self.log = log
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._task)

    async def sweep(self) -> int:
        """Claim and announce every binding due now; how many there were."""
        total = 0
        while True:
            expired = await self.bindings.claim_expired(self.clock(), BATCH)
            for binding in expired:
                self.outbox.post(BindingExpired(binding=binding.location()))
            total += len(expired)
            if len(expired) < BATCH:
                return total

    async def _run(self) -> None:
        failing = False
        while not self._stopping:
            try:
                await self.sweep()
                failing = False
            except (RedisError, OSError) as error:
                if not failing:
                    self.log.warning("expiry sweep failed: %s", f"{type(error).__name__}: {error}")
                failing = True
            await asyncio.sleep(SWEEP_INTERVAL)
