"""What the edge knows about each gateway's health, so the proxy can skip the ones down.

The health service feeds it (``set``, through :mod:`services.edge.feeds.health`);
until it has spoken, every gateway is ``unknown`` and is tried like one that is
up. States are the health service's: ``probing`` is suspected (tried only
after the healthy ones), ``down`` and ``disabled`` are skipped. The DNS
targets of a gateway given by name are here too, as ``{id}@{transport}:{name}:{port}``.
"""

from __future__ import annotations

from typing import Literal

GatewayState = Literal["up", "down", "probing", "disabled", "unknown"]


class GatewayHealth:
    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[str, GatewayState] = {}

    def state(self, gateway_id: str) -> GatewayState:
        return self._states.get(gateway_id, "unknown")

    def set(self, gateway_id: str, state: GatewayState) -> None:
        self._states[gateway_id] = state

    def forget(self, gateway_id: str) -> None:
        """The gateway is gone from the health service's targets: back to ``unknown``."""
        self._states.pop(gateway_id, None)
