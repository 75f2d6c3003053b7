"""The edge's view of the health service: target states and dispatcher sets, kept current.

The gateway states come as for every reader of the routing table
(`shared.health.feed.GatewayHealthFeed`: the routing cache's
:class:`GatewayHealth`; the proxy skips gateways down or disabled and tries
probing ones last); the edge adds :class:`DispatchSets` (``ds:`` targets and
the sets themselves, ``health.dispatcher.…`` events) and a metric per target.
"""

from __future__ import annotations

import logging

from services.edge.destinations import DispatchSets
from services.edge.metrics import TARGET_STATE
from shared.bus import Bus, Envelope
from shared.contracts.health import (
    DispatcherSetDeleted,
    DispatcherSetUpserted,
    TargetState,
    TargetStateName,
)
from shared.health.feed import TARGET_EVENTS, GatewayHealthFeed
from shared.routing_table.cache import GatewayHealth
from shared.store import Store

log = logging.getLogger("callmesh.edge.health")

HEALTH_EVENTS = (*TARGET_EVENTS, "health.dispatcher.*")
STATES: tuple[TargetStateName, ...] = ("up", "down", "probing", "disabled")


class HealthFeed(GatewayHealthFeed):
    def __init__(self, store: Store, bus: Bus, gateways: GatewayHealth) -> None:
        super().__init__(store, bus, gateways, patterns=HEALTH_EVENTS, log=log)
        self.sets = DispatchSets()

    async def load(self) -> None:
        sets = await self._store.dispatcher_sets()
        self.sets.replace(sets)  # before the states: a member's state names its set
        await super().load()
        log.info("health feed: %d target states, %d dispatcher sets", len(self._records), len(sets))

    def apply_other(self, envelope: Envelope) -> None:
        kind = envelope.type
        if kind == DispatcherSetUpserted.routing_key:
            event = envelope.payload(DispatcherSetUpserted)
            self.sets.put(event.set_id, event.set)
        elif kind == DispatcherSetDeleted.routing_key:
            self.sets.delete(envelope.payload(DispatcherSetDeleted).set_id)

    def _apply_state(self, record: TargetState) -> None:
        super()._apply_state(record)
        if record.set_id is not None:
            self.sets.set_state(record.set_id, _set_key(record), record.state)
        for state in STATES:
            TARGET_STATE[record.target, state] = 1 if state == record.state else 0

    def _forget(self, target_id: str) -> TargetState | None:
        record = super()._forget(target_id)
        if record is not None:
            if record.set_id is not None:
                self.sets.forget_state(record.set_id, _set_key(record))
            for state in STATES:
                TARGET_STATE.pop((target_id, state), None)
        return record


def _set_key(record: TargetState) -> str:
    """A destination's key in its set's states: its URI (``ds:{set_id}:{uri}``), or
    ``{uri}@{transport}:{name}:{port}`` for one DNS target of a destination given by name."""
    return record.target.removeprefix(f"ds:{record.set_id}:")
