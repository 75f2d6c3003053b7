"""Where HEP packets go: ``CALLMESH_HEP_DESTINATIONS``' items, parsed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HepDestination:
    """``udp:10.0.0.9:9060`` or ``tcp:[2001:db8::9]:9060``."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HepDestination:
        """Raises `ValueError` naming what is wrong."""
        transport, _, rest = text.strip().partition(":")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"{text!r}: HEP destination must start with udp: or tcp:")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]:")
        else:
            host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: HEP destination must be transport:host:port")
        return cls(transport, host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_destinations(text: str) -> list[HepDestination]:
    """A comma-separated list (empty: none); `ValueError` names the bad item."""
    return [HepDestination.parse(item) for item in text.split(",") if item.strip()]
