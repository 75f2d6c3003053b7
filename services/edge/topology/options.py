"""What topology hiding is told: per-target options, the edge's own address, process settings."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from services.edge.topology.tokens import Keyring
from shared.model import InputModel
from shared.sip.uri import SipUri

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!*_+`'")


class TopologyOptions(InputModel):
    """How to hide toward one gateway, dispatcher set or rule (attach it there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mask_call_id: bool = False
    """Encrypt the Call-ID toward the hidden side (Asterisk writes its IP into it)."""
    keep_contact_user: bool = False
    """Keep the user part of the internal Contact (some carriers route on it)."""
    contact_uri_params: frozenset[str] = frozenset()
    """Contact URI parameters copied onto the edge's Contact (lower-case names)."""
    contact_params: frozenset[str] = frozenset()
    """Contact header parameters copied (e.g. `+sip.instance`, `expires`)."""
    rewrite_private_hosts: bool = True
    """Replace private IP hosts in From, To and P-Asserted-Identity by the edge's.

    RFC 3261 UAs match dialogs on tags, not on these URIs, so nothing has to
    be restored on the way back.
    """
    param: str = Field(default="th", min_length=1, max_length=16)
    """Name of the URI/Via parameter carrying the tokens."""
    call_id_prefix: str = Field(default="CMH-", min_length=1, max_length=16)
    """Marks a masked Call-ID so it is recognised on the way back."""

    @field_validator("contact_uri_params", "contact_params")
    @classmethod
    def _lower(cls, names: frozenset[str]) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in names)

    @field_validator("param", "call_id_prefix")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN_CHARS.issuperset(value):
            raise ValueError("must be a SIP token (letters, digits, -.!*_+`')")
        return value

    @field_validator("param")
    @classmethod
    def _lower_param(cls, value: str) -> str:
        return value.lower()  # URI parameter names compare case-insensitively


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
