"""What gets probed: every enabled gateway of the routing table and every dispatcher destination.

Target ids: ``gw:{gateway_id}`` for a routing-table gateway, and
``ds:{set_id}:{uri}`` for a dispatcher destination
(:func:`shared.dispatcher.destination_target_id`). A gateway or destination
given by name is probed at each target DNS gives it instead (RFC 3263: every
SRV record's host), as ``gw:{gateway_id}@{transport}:{name}:{port}`` or
``ds:{set_id}:{uri}@{transport}:{name}:{port}``: one failing host is down
alone, and edges skip it while trying the name's others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shared.contracts.health import TargetKind
from shared.dispatcher import DispatcherSet, destination_target_id
from shared.dns import DnsTarget


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    id: str
    kind: TargetKind
    address: str
    gateway_id: str | None = None
    set_id: str | None = None


def gateway_target_id(gateway_id: str) -> str:
    return f"gw:{gateway_id}"


def gateway_target(gateway_id: str, address: str) -> ProbeTarget:
    return ProbeTarget(gateway_target_id(gateway_id), "gateway", address, gateway_id=gateway_id)


def dns_target_id(gateway_id: str, label: str) -> str:
    """The target of one DNS target (`DnsTarget.label`) of a gateway given by name."""
    return f"gw:{gateway_id}@{label}"


def dns_target(gateway_id: str, target: DnsTarget) -> ProbeTarget:
    return ProbeTarget(
        dns_target_id(gateway_id, target.label), "gateway", _uri(target), gateway_id=gateway_id
    )


def set_targets(
    set_id: str,
    dispatcher_set: DispatcherSet,
    resolved: Mapping[str, tuple[DnsTarget, ...]],
    named: Callable[[str], bool],
) -> Iterable[ProbeTarget]:
    """A set's destinations; one given by name (`named`) at its DNS targets in `resolved`
    (by its own target id), none until it resolves."""
    for destination in dispatcher_set.destinations:
        target_id = destination_target_id(set_id, destination.uri)
        if not named(destination.uri):
            yield ProbeTarget(target_id, "destination", destination.uri, set_id=set_id)
            continue
        for target in resolved.get(target_id, ()):
            yield ProbeTarget(
                f"{target_id}@{target.label}", "destination", _uri(target), set_id=set_id
            )


def _uri(target: DnsTarget) -> str:
    """Where to probe one DNS target: its address, port and transport."""
    host = f"[{target.address}]" if ":" in target.address else target.address
    return f"sip:{host}:{target.port};transport={target.transport}"
