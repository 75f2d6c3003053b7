"""The edge's view of the health service: target states and dispatcher sets, kept current.

At start (and after every bus reconnect, when events may have been missed)
it loads every stored state and set from Redis through the health service's
own store reader; between loads it follows the ``health.…`` events on a
private queue (every edge needs every event): a `shared.bus.feed.EventFeed`.

It feeds two things: the routing cache's :class:`GatewayHealth` (``gw:``
targets; the proxy skips gateways down or disabled and tries probing ones
last) and :class:`DispatchSets` (``ds:`` targets and the sets themselves).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from services.edge.dispatch import DispatchSets
from services.edge.dispatch.metrics import TARGET_STATE
from shared.bus import Bus, Envelope
from shared.bus.feed import EventFeed
from shared.contracts.health import (
    DispatcherSetDeleted,
    DispatcherSetUpserted,
    TargetRemoved,
    TargetState,
    TargetStateName,
)
from shared.health.store import HealthStore
from shared.routing_table.cache import GatewayHealth
from shared.store import Store

log = logging.getLogger("callmesh.edge.health")

HEALTH_EVENTS = (
    TargetState.routing_key,
    TargetRemoved.routing_key,
    "health.dispatcher.*",
)
STATES: tuple[TargetStateName, ...] = ("up", "down", "probing", "disabled")


class HealthFeed(EventFeed):
    def __init__(self, store: Store, bus: Bus, gateways: GatewayHealth) -> None:
        super().__init__(bus, HEALTH_EVENTS, log)
        self._store = HealthStore(store)
        self.gateways = gateways
        self.sets = DispatchSets()
        self.loads = 0
        self._records: dict[str, TargetState] = {}
        """The last state of every known target: what a removal or reload must undo."""

    async def load(self) -> None:
        records = await self._store.all_states()
        sets = await self._store.dispatcher_sets()
        for target_id in list(self._records):
            self._forget(target_id)
        self.sets.replace(sets)
        for record in records:
            self._apply_state(record)
        self.loads += 1
        log.info("health feed: %d target states, %d dispatcher sets", len(records), len(sets))

    async def apply(self, envelope: Envelope) -> None:
        kind = envelope.type
        try:
            if kind == TargetState.routing_key:
                self._apply_state(envelope.payload(TargetState))
            elif kind == TargetRemoved.routing_key:
                self._forget(envelope.payload(TargetRemoved).target)
            elif kind == DispatcherSetUpserted.routing_key:
                event = envelope.payload(DispatcherSetUpserted)
                self.sets.put(event.set_id, event.set)
            elif kind == DispatcherSetDeleted.routing_key:
                self.sets.delete(envelope.payload(DispatcherSetDeleted).set_id)
        except ValidationError as error:
            log.warning(
                "health feed: ignored a malformed %s event: %s",
                kind,
                error.errors(include_url=False, include_input=False)[0]["msg"],
            )

    def _apply_state(self, record: TargetState) -> None:
        self._records[record.target] = record
        if record.gateway_id is not None:
            self.gateways.set(record.gateway_id, record.state)
        elif record.set_id is not None:
            self.sets.set_state(record.set_id, record.address, record.state)
        for state in STATES:
            TARGET_STATE.labels(record.target, state).set(1 if state == record.state else 0)

    def _forget(self, target_id: str) -> None:
        record = self._records.pop(target_id, None)
        if record is None:
            return
        if record.gateway_id is not None:
            self.gateways.forget(record.gateway_id)
        elif record.set_id is not None:
            self.sets.forget_state(record.set_id, record.address)
        for state in STATES:
            TARGET_STATE.remove(target_id, state)
