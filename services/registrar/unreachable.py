"""The consumer of ``registrar.unreachable``: an edge says a binding stopped answering its pings.

The binding is removed through the same atomic write as any other change
(``BindingStore.change``) and announced as ``registrar.binding.removed`` with
cause ``unreachable``, so every edge's cache drops it as for an unregister.
The report names where the edge knew the phone (``received``, ``edge``): a
binding refreshed from elsewhere since (the phone moved, another edge now
holds its flow) is not the one that went silent, and is kept; so is one
refreshed through the same flow after the edge last heard of it (its expiry
moved: the phone spoke, and the report crossed its REGISTER on the way).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from services.registrar.bindings import BindingStore
from services.registrar.outbox import EventOutbox
from shared.bus import DeadLetter, WorkMessage
from shared.contracts.registrar import BindingRemoved, UnreachableBinding
from shared.registrar.model import Binding


class UnreachableHandler:
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

    async def __call__(self, message: WorkMessage) -> None:
        try:
            report = UnreachableBinding.model_validate_json(message.body)
        except ValidationError as error:
            raise DeadLetter(f"not an UnreachableBinding: {error.error_count()} errors") from None
        await self.remove(report)

    async def remove(self, report: UnreachableBinding) -> Binding | None:
        """Remove the reported binding if it is still the one the edge pinged; it, or None."""

        def decide(live: dict[str, Binding]) -> tuple[Binding | None, list[Binding]]:
            found = live.get(report.contact)
            if found is None or (found.received, found.edge) != (report.received, report.edge):
                return None, []
            if report.expires_at is not None and found.expires_at != report.expires_at:
                return None, []
            return found, [b for b in live.values() if b.contact != report.contact]

        removed, _ = await self.bindings.change(
            report.aor, self.clock(), decide, lambda result: result[1] if result[0] else None
        )
        if removed is not None:
            self.outbox.post(BindingRemoved(binding=removed.location(), cause="unreachable"))
            self.log.info(
                "binding unreachable, removed",
                extra={"aor": report.aor, "contact": report.contact, "edge": report.edge},
            )
        return removed
