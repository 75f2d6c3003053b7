"""Gateway health as the health service publishes it, kept current for a routing cache.

Every reader of the routing table that shows or uses a gateway's state — an
edge choosing hops, the routing service's dry run — follows the same thing:
every stored target state at start (and after each bus reconnect, when
events may have been missed), then the ``health.target.…`` events on a
private queue.  `GatewayHealthFeed` keeps a `GatewayHealth` current that
way; the edge's feed extends it with dispatcher sets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from shared.bus import Bus, Envelope
from shared.bus.feed import EventFeed
from shared.contracts.health import TargetRemoved, TargetState
from shared.health.store import HealthStore
from shared.routing_table.cache import GatewayHealth
from shared.store import Store

TARGET_EVENTS = (TargetState.routing_key, TargetRemoved.routing_key)


class GatewayHealthFeed(EventFeed):
    def __init__(
        self,
        store: Store,
        bus: Bus,
        gateways: GatewayHealth,
        *,
        patterns: Sequence[str] = TARGET_EVENTS,
        log: logging.Logger | None = None,
    ) -> None:  # fmt: skip  (keyword-only options on their own line)
        super().__init__(bus, patterns, log or logging.getLogger("callmesh.health.feed"))
        self._store = HealthStore(store)
        self.gateways = gateways
        self.loads = 0
        self._records: dict[str, TargetState] = {}
        """The last state of every known target: what a removal or reload must undo."""

    async def load(self) -> None:
        records = await self._store.all_states()
        for target_id in list(self._records):
            self._forget(target_id)
        for record in records:
            self._apply_state(record)
        self.loads += 1

    async def apply(self, envelope: Envelope) -> None:
        kind = envelope.type
        try:
            if kind == TargetState.routing_key:
                self._apply_state(envelope.payload(TargetState))
            elif kind == TargetRemoved.routing_key:
                self._forget(envelope.payload(TargetRemoved).target)
            else:
                self.apply_other(envelope)
        except ValidationError as error:
            self._log.warning(
                "health feed: ignored a malformed %s event: %s",
                kind,
                error.errors(include_url=False, include_input=False)[0]["msg"],
            )

    def apply_other(self, envelope: Envelope) -> None:
        """An event of a pattern a subclass added (nothing here)."""

    def _apply_state(self, record: TargetState) -> None:
        self._records[record.target] = record
        if record.gateway_id is not None:
            self.gateways.set(gateway_key(record.target), record.state)

    def _forget(self, target_id: str) -> TargetState | None:
        record = self._records.pop(target_id, None)
        if record is not None and record.gateway_id is not None:
            self.gateways.forget(gateway_key(record.target))
        return record


def gateway_key(target_id: str) -> str:
    """A gateway target's key in `GatewayHealth`: the gateway id for ``gw:{id}``, and
    ``{id}@{transport}:{name}:{port}`` for one of the DNS targets of a gateway given by name."""
    return target_id.removeprefix("gw:")
