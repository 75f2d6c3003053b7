"""The accounting service: call records from the edges' call events, billed exactly once.

Every instance consumes the shared durable queue ``{ns}.accounting.calls``
(bound to ``edge.call.#``) with ``consumers`` workers, commits their events
together (:mod:`services.accounting.batching`, :mod:`services.accounting.store`),
publishes completions (:mod:`services.accounting.consumer`), closes silent
calls (:mod:`services.accounting.closer`) and serves ``/v1/cdrs``.  Instances
share nothing but the database, so any number of them give the same records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from fastapi import APIRouter
from sqlalchemy import text

from services.accounting.api.cdrs import cdrs_router
from services.accounting.api.open_calls import open_calls_router
from services.accounting.api.summary import summary_router
from services.accounting.batching import GroupCommit
from services.accounting.closer import TimeoutCloser
from services.accounting.consumer import Announcer, CallEventHandler
from services.accounting.queries import RecordQueries
from services.accounting.settings import AccountingSettings
from services.accounting.store import RecordStore, database_url, open_engine, unavailable
from shared.background import cancel_and_wait
from shared.bus.base import describe
from shared.contracts.accounting import CALL_EVENTS, CALLS_QUEUE
from shared.service import Runtime, Service

CONSUMER_BATCH = 512
"""Messages one consumer takes at most at once (what waits); twice that wait in memory."""


class AccountingService(Service):
    name = "accounting"

    def __init__(
        self, runtime: Runtime, accounting_settings: AccountingSettings | None = None
    ) -> None:
        super().__init__(runtime)
        config = self.config = accounting_settings or AccountingSettings()
        secret = config.database_url
        url = database_url(secret.get_secret_value() if secret else None, self.settings.data_dir)
        engine = open_engine(url)
        self.records = RecordStore(engine)
        self.queries = RecordQueries(engine)
        self._stopping = asyncio.Event()
        announce = Announcer(self.bus, config.completed_batch)
        self.committer = GroupCommit(self.records)
        self.handler = CallEventHandler(
            self.committer.apply, announce, self._stopping, self.log, config.retry_delay
        )
        self.closer = TimeoutCloser(self.records, announce, config.max_call_duration, self.log)
        self._closing: asyncio.Task[None] | None = None
        runtime.readiness.append(("database", self._database_check))

    def routers(self) -> Sequence[APIRouter]:
        # The summary first: ``/cdrs/summary`` must not be taken for a Call-ID.
        return (
            summary_router(self.queries),
            cdrs_router(self.queries),
            open_calls_router(self.queries),
        )

    async def start(self) -> None:
        found = await self.records.migrate()
        self.log.info(
            "accounting database ready (%s, schema was at version %d)",
            self.records.dialect,
            found,
        )
        for _ in range(self.config.consumers):
            await self.bus.consume_batches(
                CALLS_QUEUE,
                self.handler,
                max_batch=CONSUMER_BATCH,
                prefetch=2 * CONSUMER_BATCH,
                events=[CALL_EVENTS],
            )
        self._closing = asyncio.get_running_loop().create_task(self._close_forever())

    async def stop(self) -> None:
        self._stopping.set()
        if self._closing is not None:
            await cancel_and_wait(self._closing)
        await self.committer.close()
        await self.records.close()

    async def _close_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.closer.round()
            except Exception as error:
                # The next round retries; the loop must outlive a database outage.
                self.log.warning("timeout close round failed: %s", describe(error))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.close_interval):
                    await self._stopping.wait()

    async def _database_check(self) -> str | None:
        try:
            async with asyncio.timeout(2), self.records.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            if unavailable(error):
                return "accounting database unreachable"
            raise
        return None
