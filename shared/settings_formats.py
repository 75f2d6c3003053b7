"""The formats of the settings that name addresses: listeners, ``host:port``, client certificates.

Kept apart from :mod:`shared.settings` (which re-exports them) so that the settings model
stays one module under the size limit."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Transport = Literal["udp", "tcp", "tls", "ws", "wss"]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One edge socket from ``CALLMESH_SIP_LISTEN``."""

    transport: Transport
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        transport, _, rest = text.strip().partition(":")
        if transport not in ("udp", "tcp", "tls", "ws", "wss"):
            raise ValueError(
                f"unknown transport {transport!r} in {text!r} (udp, tcp, tls, ws or wss)"
            )
        host, port = split_host_port(rest)
        return cls(transport, host, port)  # type: ignore[arg-type]


def split_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``; the brackets are removed."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [host]:port, got {text!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port, got {text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def parse_client_certs(text: str) -> dict[str, tuple[str, str]]:
    """``name=/cert.pem:/key.pem`` entries, ``;``-separated → name → (certificate, key)."""
    pairs: dict[str, tuple[str, str]] = {}
    for entry in filter(None, (item.strip() for item in text.split(";"))):
        name, sep, files = entry.partition("=")
        certificate, colon, key = files.strip().partition(":")
        name, certificate, key = name.strip(), certificate.strip(), key.strip()
        if not (sep and colon and name) or not (certificate[:1] == key[:1] == "/"):
            raise ValueError(f"expected name=/certificate.pem:/key.pem, got {entry!r}")
        if not all(c.isalnum() or c in "_.-" for c in name) or len(name) > 64:
            raise ValueError(f"bad client certificate name {name!r} (letters, digits, _ . -)")
        pairs[name] = (certificate, key)
    return pairs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
