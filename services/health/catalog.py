"""Every health instance's list of targets: routing-table gateways plus dispatcher destinations.

Loaded from Redis at start (and again on every resync), then kept current by
the ``routing.…`` and ``health.dispatcher.…`` events, so a standby instance
that becomes the prober already knows what to probe. A gateway with
``enabled: false`` is not probed: no call goes to it.
"""

from __future__ import annotations

from services.health.targets import ProbeTarget, gateway_target, set_targets
from shared.contracts.routing import TableChanged
from shared.dispatcher import DispatcherSet
from shared.routing_table.model import Gateway
from shared.routing_table.store import RoutingStore

_PAGE = 1000


class Catalog:
    def __init__(self, routing: RoutingStore) -> None:
        self._routing = routing
        self.gateways: dict[str, str] = {}
        """Enabled gateway id → address."""
        self.sets: dict[str, DispatcherSet] = {}
        self.targets: dict[str, ProbeTarget] = {}

    async def load(self, sets: dict[str, DispatcherSet]) -> None:
        gateways: dict[str, str] = {}
        cursor = 0
        while True:
            cursor, page = await self._routing.page("gateway", cursor, _PAGE)
            for gateway_id, record in page:
                if isinstance(record, Gateway) and record.enabled:
                    gateways[gateway_id] = record.address
            if not cursor:
                break
        self.gateways = gateways
        self.sets = dict(sets)
        self._rebuild()

    def apply_routing(self, event: TableChanged) -> bool:
        """Apply the gateway changes of a routing change set; True if a target changed."""
        before = dict(self.gateways)
        for change in event.changes:
            if change.kind != "gateway":
                continue
            gateway = Gateway.model_validate(change.data) if change.op == "upsert" else None
            if gateway is not None and gateway.enabled:
                self.gateways[change.id] = gateway.address
            else:
                self.gateways.pop(change.id, None)
        if self.gateways == before:
            return False
        self._rebuild()
        return True

    def put_set(self, set_id: str, dispatcher_set: DispatcherSet) -> None:
        self.sets[set_id] = dispatcher_set
        self._rebuild()

    def delete_set(self, set_id: str) -> None:
        if self.sets.pop(set_id, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        targets = [gateway_target(gid, address) for gid, address in self.gateways.items()]
        for set_id, dispatcher_set in self.sets.items():
            targets.extend(set_targets(set_id, dispatcher_set))
        self.targets = {target.id: target for target in targets}
