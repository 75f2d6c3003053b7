"""Every health instance's list of targets: routing-table gateways plus dispatcher destinations.

Loaded from Redis at start (and again on every resync), then kept current by
the ``routing.…`` and ``health.dispatcher.…`` events, so a standby instance
that becomes the prober already knows what to probe. A gateway with
``enabled: false`` is not probed: no call goes to it. A gateway or dispatcher
destination given by name is probed at its DNS targets (`resolved`, which the
service keeps current with `shared.dns`), not at the name: until its name
resolves it has none.
"""

from __future__ import annotations

from services.health.targets import ProbeTarget, dns_target, gateway_target, set_targets
from shared.contracts.routing import TableChanged
from shared.dispatcher import DispatcherSet, destination_target_id
from shared.dns import DnsTarget, NameSpec
from shared.dns.locate import name_spec
from shared.routing_table.gateway_tls import GatewayTls
from shared.routing_table.model import Gateway
from shared.routing_table.store import RoutingStore
from shared.sip.errors import SipError
from shared.sip.uri import SipUri, parse_uri

_PAGE = 1000


class Catalog:
    def __init__(self, routing: RoutingStore) -> None:
        self._routing = routing
        self.gateways: dict[str, str] = {}
        """Enabled gateway id → address."""
        self.tls: dict[str, GatewayTls] = {}
        """Gateway id → its `tls` options, for those that have some (the probes use them)."""
        self.sets: dict[str, DispatcherSet] = {}
        self.targets: dict[str, ProbeTarget] = {}
        self.resolved: dict[str, tuple[DnsTarget, ...]] = {}
        """Owner → its DNS targets (one per SRV host), for the owners `names` gives."""

    def names(self) -> dict[str, NameSpec]:
        """What to resolve, by owner: the enabled gateways given by name (by gateway id) and
        the dispatcher destinations given by name (by target id, ``ds:{set_id}:{uri}``)."""
        found = {}
        for gateway_id, address in self.gateways.items():
            spec = _spec(address)
            if spec is not None:
                found[gateway_id] = spec
        for set_id, dispatcher_set in self.sets.items():
            for destination in dispatcher_set.destinations:
                spec = _spec(destination.uri)
                if spec is not None:
                    found[destination_target_id(set_id, destination.uri)] = spec
        return found

    def set_resolved(self, owner: str, targets: list[DnsTarget]) -> bool:
        """A name's targets now (one per SRV host and port); True if that changed the targets."""
        unique: dict[str, DnsTarget] = {}
        for target in targets:
            unique.setdefault(target.label, target)
        found = tuple(unique.values())
        if self.resolved.get(owner) == found:
            return False
        self.resolved[owner] = found
        self._rebuild()
        return True

    async def load(self, sets: dict[str, DispatcherSet]) -> None:
        gateways: dict[str, str] = {}
        tls: dict[str, GatewayTls] = {}
        cursor = 0
        while True:
            cursor, page = await self._routing.page("gateway", cursor, _PAGE)
            for gateway_id, record in page:
                if isinstance(record, Gateway) and record.enabled:
                    gateways[gateway_id] = record.address
                    if record.tls is not None:
                        tls[gateway_id] = record.tls
            if not cursor:
                break
        self.gateways, self.tls = gateways, tls
        self.sets = dict(sets)
        self._rebuild()

    def apply_routing(self, event: TableChanged) -> bool:
        """Apply the gateway changes of a routing change set; True if a target changed."""
        before = dict(self.gateways)
        for change in event.changes:
            if change.kind != "gateway":
                continue
            gateway = Gateway.model_validate(change.data) if change.op == "upsert" else None
            self.tls.pop(change.id, None)
            if gateway is not None and gateway.enabled:
                self.gateways[change.id] = gateway.address
                if gateway.tls is not None:
                    self.tls[change.id] = gateway.tls
            else:
                self.gateways.pop(change.id, None)
        if self.gateways == before:
            return False
        self._rebuild()
        return True

    def tls_gateways(self) -> list[tuple[str, GatewayTls | None]]:
        """The address and `tls` options of every gateway that has some."""
        return [(self.gateways[gid], tls) for gid, tls in self.tls.items() if gid in self.gateways]

    def tls_name(self, peer: tuple[str, int]) -> str | None:
        """The name (gateway's or destination's URI host) whose TLS DNS target `peer` is, for
        the certificate check (`shared.sip.transport.tls_peers`); asked per new connection."""
        specs = self.names()
        for owner, targets in self.resolved.items():
            spec = specs.get(owner)
            if spec is not None and any(
                t.transport == "tls" and (t.address, t.port) == peer for t in targets
            ):
                return spec.host
        return None

    def put_set(self, set_id: str, dispatcher_set: DispatcherSet) -> None:
        self.sets[set_id] = dispatcher_set
        self._rebuild()

    def delete_set(self, set_id: str) -> None:
        if self.sets.pop(set_id, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        targets = []
        for gateway_id, address in self.gateways.items():
            if _spec(address) is None:
                targets.append(gateway_target(gateway_id, address))
            else:
                targets.extend(dns_target(gateway_id, t) for t in self.resolved.get(gateway_id, ()))
        for set_id, dispatcher_set in self.sets.items():
            targets.extend(set_targets(set_id, dispatcher_set, self.resolved, _named))
        owners = self.names()
        for gone in [owner for owner in self.resolved if owner not in owners]:
            del self.resolved[gone]
        self.targets = {target.id: target for target in targets}


def _named(address: str) -> bool:
    return _spec(address) is not None


def _spec(address: str) -> NameSpec | None:
    try:
        uri = parse_uri(address)
    except SipError:
        return None
    return name_spec(uri) if isinstance(uri, SipUri) else None
