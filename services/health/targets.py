"""What gets probed: every enabled gateway of the routing table and every dispatcher destination.

Target ids: ``gw:{gateway_id}`` for a routing-table gateway, and
``ds:{set_id}:{uri}`` for a dispatcher destination
(:func:`shared.dispatcher.destination_target_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.contracts.health import TargetKind
from shared.dispatcher import DispatcherSet, destination_target_id


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


def set_targets(set_id: str, dispatcher_set: DispatcherSet) -> Iterable[ProbeTarget]:
    for destination in dispatcher_set.destinations:
        yield ProbeTarget(
            destination_target_id(set_id, destination.uri),
            "destination",
            destination.uri,
            set_id=set_id,
        )
