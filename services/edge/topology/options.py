"""What topology hiding is told: the edge's own address and the process settings.

The per-target options (`TopologyOptions`) belong to the routing table: see
`shared.routing_table.topology`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from services.edge.topology.tokens import Keyring
from shared.routing_table.topology import TopologyOptions
from shared.sip.uri import SipUri


class TopologySettings(BaseModel):
    """Process-wide: the shared keys (`CALLMESH_TOPOLOGY_KEYS`) and the default options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: SecretStr
    """`id:base64key[,id:base64key]`, current first; the same on every edge."""
    defaults: TopologyOptions = TopologyOptions()

    @field_validator("keys")
    @classmethod
    def _parse(cls, keys: SecretStr) -> SecretStr:
        Keyring.parse(keys.get_secret_value())
        return keys

    def keyring(self) -> Keyring:
        return Keyring.parse(self.keys.get_secret_value())


HostOwner = Callable[[str, int | None, str], bool]
"""(host, port or None, transport) → whether that address is this edge's."""


class EdgeAddress:
    """The edge interface facing the hidden side: what goes into its Contact and Record-Route.

    `owns` recognises every address of the edge (all interfaces, advertised
    names); the default knows only this one.  Tokens are only honoured in a
    URI that names the edge, so a foreign `;th=` parameter is left alone.
    """

    __slots__ = (
        "_owns",
        "host",
        "host_port",
        "port",
        "transport",
        "transport_param",
        "transport_suffix",
    )

    def __init__(
        self, host: str, port: int, transport: str = "udp", owns: HostOwner | None = None
    ) -> None:
        self.host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.port = port
        self.transport = transport.lower()
        self.host_port = f"{self.host}:{port}"
        self.transport_param: tuple[tuple[str, str | None], ...] = (
            () if self.transport == "udp" else (("transport", self.transport),)
        )
        self.transport_suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        self._owns = owns

    def owns(self, uri: SipUri) -> bool:
        transport = (uri.param("transport") or "udp").lower()
        if self._owns is not None:
            return self._owns(uri.host, uri.port, transport)
        port = uri.port or (5061 if uri.scheme == "sips" else 5060)
        return uri.host.lower() == self.host.lower() and port == self.port
