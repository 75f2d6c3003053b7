"""Via header values (RFC 3261 §20.42, §18.2.1; RFC 3581 rport).

Whitespace is allowed around the `/` of the sent-protocol and around `;`
and `=` (RFC 4475 §3.1.1.1), so the parser normalises it; `str()` writes the
compact form.  Unknown transports are kept (RFC 4475 §3.1.1.10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from shared.sip.errors import SipParseError
from shared.sip.headers import TOKEN_CHARS, split_commas
from shared.sip.params import (
    Params,
    format_params,
    param_of,
    param_value,
    parse_params,
    read_param,
    with_param,
)
from shared.sip.uri import C_READERS, VIA_BRANCH, parse_port, split_host_port

_SIP_2_0: Final = "SIP/2.0"
_TRANSPORTS: Final = frozenset({"UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "tls"})
"""Transports as usually written: one set lookup, not a token check of each character (a Via
is parsed per request and per relayed answer, ~25,000 instructions, pure Python)."""


@dataclass(slots=True, init=False, unsafe_hash=True)
class Via:
    """One Via hop.  `transport` is upper-cased; `host` keeps IPv6 brackets."""

    transport: Final[str]
    host: Final[str]
    port: Final[int | None]
    params: Final[Params]
    protocol: Final[str]

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params = (),
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params
        self.protocol = protocol

    def param(self, name: str) -> str | None:
        """Value of parameter `name` ("" for a flag such as bare `rport`), or None."""
        return param_value(self.params, name.lower())

    @property
    def branch(self) -> str | None:
        return param_value(self.params, "branch")

    @property
    def received(self) -> str | None:
        return param_value(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The rport value once filled in by a server; None when absent or empty."""
        value = param_value(self.params, "rport")
        return parse_port(value) if value else None

    @property
    def wants_rport(self) -> bool:
        """True if the client asked for symmetric response routing (`;rport` present)."""
        return param_value(self.params, "rport") is not None

    @property
    def maddr(self) -> str | None:
        return param_value(self.params, "maddr")

    @property
    def ttl(self) -> int | None:
        value = param_value(self.params, "ttl")
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 3 or int(value) > 255:
            raise SipParseError("malformed Via ttl")
        return int(value)

    @property
    def sent_by(self) -> str:
        """`host[:port]` as in the header."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(self, **values: str | None) -> Via:
        """A copy with parameters set (e.g. `received="192.0.2.1", rport="5060"`)."""
        params = self.params
        for name, value in values.items():
            params = with_param(params, name, value)
        return replace(self, params=params)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


ViaParts = tuple[str, str, int | None, Params]
"""`Via`'s arguments but its protocol (SIP/2.0), as the C reader gives them."""

SIP_VIA: Final[Callable[[str], ViaParts | None] | None] = (
    None if C_READERS is None else C_READERS.sip_via
)
"""The C reader of a plain via-parm (`_uri.c`) in the compiled build, else None."""


def parse_via(text: str) -> Via:
    """Parse exactly one via-parm (no commas outside quoted parameter values).

    `ttl` and `rport` values are checked when read (the properties raise),
    which `Message.validate` does; the hot path reads neither.  A plain one is read by the C
    reader when the compiled build has it, any other by `_read_via`, which stays the one
    definition of what is accepted.
    """
    if SIP_VIA is not None:
        parts = SIP_VIA(text)
        if parts is not None:
            transport, host, port, params = parts
            return Via(transport, host, port, params)
    return _read_via(text)


def _read_via(text: str) -> Via:
    """The Python reading of a via-parm: every one the C reader leaves, and all without it."""
    head, semicolon, param_text = text.partition(";")
    pieces = head.split("/", 2)
    if len(pieces) != 3:
        raise SipParseError("malformed Via (sent-protocol)")
    name, version, rest = pieces
    protocol = _SIP_2_0  # the usual one: no text made for it
    if name != "SIP" or version != "2.0":
        name = name.strip()
        version = version.strip()
        if not (name and version and TOKEN_CHARS.issuperset(name + version)):
            raise SipParseError("malformed Via (sent-protocol)")
        protocol = f"{name}/{version}"
    transport_and_host = rest.split(None, 1)
    if len(transport_and_host) != 2:
        raise SipParseError("malformed Via (sent-protocol or sent-by missing)")
    transport, sent_by = transport_and_host
    if transport not in _TRANSPORTS and not TOKEN_CHARS.issuperset(transport):
        raise SipParseError("malformed Via transport")
    sent_by = sent_by.strip()
    if " " in sent_by or "\t" in sent_by:
        if ":" not in sent_by:
            raise SipParseError("malformed Via sent-by")
        sent_by = "".join(sent_by.split())
    host, port = split_host_port(sent_by)
    params = parse_params(semicolon + param_text, "Via") if semicolon else ()
    return Via(transport.upper(), host, port, params, protocol)


def branch_of(text: str) -> str | None:
    """The `branch` parameter of one via-parm, reading no more of it than that.

    Matching a response to its client transaction needs the branch alone
    (RFC 3261 §17.1.3), and a client transaction's own Via was just written:
    the parameters start where `parse_via` starts them (the first `;`) and only
    they are parsed, not the sent-protocol and sent-by.  Plain parameters are read by
    the C reader when the compiled build has it (`_uri.via_branch`), any others by
    `_branch_param`.
    """
    return read_param(text, VIA_BRANCH, _branch_param)


def _branch_param(text: str) -> str | None:
    semicolon = text.find(";")
    if semicolon < 0:
        return None
    return param_of(text[semicolon:], "branch", "Via")


def parse_vias(text: str) -> list[Via]:
    """Parse a Via header value, which may hold several comma-separated hops."""
    return [parse_via(element) for element in split_commas(text)]
