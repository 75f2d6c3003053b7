"""The asyncio side of the shared call limits: the Redis round trip per new call, the
leases' renewal and release, and the rate-limited ``edge.limit.reached`` events.

The sans-IO side (`services.edge.policy.limits.CallLeases`) decides what to
ask and applies the answer; this module asks Redis (`shared.limits.store`).
When Redis does not answer in ``TIMEOUT`` the call is admitted (fail open:
a carrier's traffic is worth more than a limit's exactness for the seconds
Redis is away) with one log line per outage and the ``unknown`` metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from redis.exceptions import RedisError

from services.edge.policy.limits import CallLeases
from services.edge.runtime.publisher import EventPublisher
from shared.contracts.edge import LimitReached
from shared.limits.model import LimitQuery, LimitVerdict
from shared.limits.store import SharedLimits

log = logging.getLogger("callmesh.edge.limits")
T = TypeVar("T")

TIMEOUT: Final = 1.0
IN_FLIGHT: Final = 16
"""Round trips to the limits a worker has in flight at once; the others wait their turn
(within ``TIMEOUT``). Why: the store's pool refuses a connection past its size ("Too
many connections") instead of waiting, so the backlog a stalled worker finds when it
wakes (a second of a carrier's INVITEs) would otherwise be admitted unchecked."""
EVENT_PERIOD: Final = 10.0
"""At most one ``edge.limit.reached`` per entity and worker this often."""


class LimitsRunner:
    def __init__(
        self,
        limits: SharedLimits,
        leases: CallLeases,
        publisher: EventPublisher,
        instance: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.limits = limits
        self.leases = leases
        self._publisher = publisher
        self._instance = instance
        self._loop = loop
        self._failing = False
        self._reported: dict[str, tuple[float, int]] = {}
        """entity → (when its last event went, refusals since)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        leases.on_free = self._free

    def start(self) -> None:
        self._renewer = self._loop.create_task(self._renew_forever())

    async def stop(self) -> None:
        tasks = [task for task in (self._renewer, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def acquire(self, query: LimitQuery) -> LimitVerdict | None:
        try:
            async with asyncio.timeout(TIMEOUT):
                verdict = await self._bounded(lambda: self.limits.acquire(query))
        except (RedisError, OSError, TimeoutError) as error:
            if not self._failing:
                log.warning("shared limits unavailable, admitting calls unchecked: %s", error)
            self._failing = True
            return None
        if self._failing:
            log.info("shared limits available again")
            self._failing = False
        if not verdict.admitted:
            self._report(query, verdict)
        return verdict

    async def _bounded(self, ask: Callable[[], Awaitable[T]]) -> T:
        """``ask()`` once a round trip slot is free (the coroutine made only then, so one
        timed out while waiting leaves nothing un-awaited)."""
        async with self._in_flight:
            return await ask()

    def _report(self, query: LimitQuery, verdict: LimitVerdict) -> None:
        entity = verdict.refused or ""
        now = self._loop.time()
        last, refused = self._reported.get(entity, (-EVENT_PERIOD, 0))
        refused += 1
        if now - last < EVENT_PERIOD:
            self._reported[entity] = (last, refused)
            return
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported[entity] = (now, 0)
        demand = next((d for d in query.demands if d.entity == entity), None)
        limit = None
        if demand is not None:
            limit = demand.max_cps if verdict.kind == "cps" else demand.max_concurrent
        kind = "cps" if verdict.kind == "cps" else "concurrent"
        event = LimitReached(
            entity=entity,
            kind=kind,
            limit=limit,
            refused=refused,
            period=EVENT_PERIOD,
            edge=self._instance,
        )
        self._publisher.offer(event)

    def _free(self, call_id: str, entities: tuple[str, ...], whole: bool) -> None:
        task = self._loop.create_task(self._release(call_id, entities, whole))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, call_id: str, entities: tuple[str, ...], whole: bool) -> None:
        limits = self.limits

        def freeing() -> Awaitable[object]:
            if entities:
                return limits.release(call_id, entities, whole=whole)
            return limits.release_call(call_id)

        try:
            async with asyncio.timeout(TIMEOUT):
                await self._bounded(freeing)
        except (RedisError, OSError, TimeoutError) as error:  # the lease lapses by itself
            log.warning("freeing the leases of call %s failed: %s", call_id, error)

    async def _renew_forever(self) -> None:
        interval = self.limits.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            held = self.leases.held(self._loop.time())
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: it can lose stop's cancel
                    self.leases.forget(await self.limits.renew(held))
