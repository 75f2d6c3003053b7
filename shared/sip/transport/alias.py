"""RFC 5923 connection reuse: which addresses a TLS connection a peer opened may serve.

A peer that opens a TLS connection and writes `alias` in its top Via asks us to
send the requests we have for its sent-by over that connection rather than
open one to it (a carrier's SBC behind a firewall that lets no connection in,
or one that would rather not do two handshakes).  We honour it only when the
peer has proved it *is* that sent-by (RFC 5923 §5, §6.2): its certificate,
asked for in the handshake and verified against `CALLMESH_TLS_CA`, names the
sent-by's host as RFC 5922 §7.1 says (a subjectAltName DNS entry equal to the
host name, an IP entry for an IP literal, the Common Name only in a
certificate without subjectAltName; no wildcards, §7.2).  Without that proof a
peer could write any address in its Via and receive the requests meant for it,
so nothing is aliased on plain TCP, nor on TLS without a verified client
certificate.

The alias is the connection's source address with the sent-by's port (RFC 5923
§6.2), and the sent-by's host with that port when it is a name (a TLS next hop
given by name is dialled by its name, `destination.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from shared.sip.errors import SipError
from shared.sip.headers import split_commas
from shared.sip.message import peek_header
from shared.sip.via import parse_via

PeerCertificate = Mapping[str, Any]
"""A verified peer certificate as `ssl.SSLObject.getpeercert()` gives it (empty: none)."""


def certificate_names(certificate: PeerCertificate) -> frozenset[str]:
    """The identities a verified certificate proves (RFC 5922 §7.1): its subjectAltName DNS
    names (lower-case) and IP addresses (normalised), else its Common Names; no wildcard."""
    names: set[str] = set()
    alternatives = certificate.get("subjectAltName", ())
    for kind, value in alternatives:
        if kind == "DNS" and "*" not in value:
            names.add(value.lower().rstrip("."))
        elif kind == "IP Address":
            address = _address(value.strip())
            if address is not None:
                names.add(address)
    if not alternatives:
        for part in certificate.get("subject", ()):
            for key, value in part:
                if key == "commonName" and "*" not in value:
                    names.add(value.lower().rstrip("."))
    return frozenset(names)


def alias_addresses(
    message: bytes, peer_host: str, names: frozenset[str]
) -> tuple[tuple[str, int], ...]:
    """The addresses a request that came on a TLS connection from `peer_host` asks to alias
    it to (RFC 5923), if its top Via has `alias` and `names` (the peer's verified identities)
    include the Via's host; else none. A response, or a Via that does not parse: none."""
    if not names or message.startswith(b"SIP/2.0 "):
        return ()
    raw = peek_header(message, "via")
    if raw is None:
        return ()
    try:
        via = parse_via(split_commas(raw.decode("utf-8", "replace"))[0])
    except (SipError, IndexError):
        return ()
    if via.transport != "TLS" or via.param("alias") is None:
        return ()
    host = via.host.strip("[]").lower().rstrip(".")
    identity = _address(host) or host
    if identity not in names:
        return ()
    port = via.port or 5061
    found = [(peer_host, port)]
    if _address(host) is None:
        found.append((host, port))
    return tuple(found)


def _address(text: str) -> str | None:
    """An IP literal in one spelling (`2001:DB8:0:0:0:0:0:1` → `2001:db8::1`); None for a name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
