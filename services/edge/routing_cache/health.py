"""What the edge knows about each gateway's health, so the proxy can skip the ones down.

The health service feeds it (``set``); until it has spoken, every gateway is
``unknown`` and is tried like one that is up.
"""

from __future__ import annotations

from typing import Literal

GatewayState = Literal["up", "down", "unknown"]


class GatewayHealth:
    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[str, GatewayState] = {}

    def state(self, gateway_id: str) -> GatewayState:
        return self._states.get(gateway_id, "unknown")

    def set(self, gateway_id: str, state: GatewayState) -> None:
        self._states[gateway_id] = state
