"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, §25.1; RFC 3966), parsed from text.

Escaped (`%XX`) user, password, parameter and header parts are unescaped on
parsing and re-escaped on `str()`, so two URIs that differ only in escaping
are equal values (RFC 4475 §3.1.1.3 to §3.1.1.5).  A `%` that does not start an escape
is kept literally.  Hosts keep their brackets when they are IPv6 references
so `host` can be pasted back into a URI or a Via.

The value classes here, in `via` and in `address` are treated as immutable
(change them with `dataclasses.replace` or their `with_*` methods) but are
not `frozen`: a frozen dataclass costs four times as much to construct, and
the proxy builds several per packet.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Final
from urllib.parse import quote, unquote

from shared.sip.errors import SipParseError
from shared.sip.params import ParamReader, Params, param_value

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOSTNAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
)
_IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:.")
_MARK: Final = "-_.!~*'()"
_USER_SAFE: Final = _MARK + "&=+$,;?/"
_PASSWORD_SAFE: Final = _MARK + "&=+$,"
_PARAM_SAFE: Final = _MARK + "[]/:&+$"
_HEADER_SAFE: Final = _MARK + "[]/?:+$"


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _escape(text: str, safe: str) -> str:
    """`text` %-escaped but for `safe`; ASCII letters and digits alone (the usual user part,
    the call events' caller) are returned as they are, as `quote` would, without its work."""
    if text.isascii() and text.isalnum():
        return text
    return quote(text, safe=safe, errors="surrogateescape")


@dataclass(slots=True, init=False, unsafe_hash=True)
class SipUri:
    """A `sip:` or `sips:` URI.  Parameter names are lower-cased; values unescaped."""

    host: Final[str]
    user: Final[str | None]
    password: Final[str | None]
    port: Final[int | None]
    params: Final[Params]
    headers: Final[tuple[tuple[str, str], ...]]
    scheme: Final[str]

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        host: str,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        params: Params = (),
        headers: tuple[tuple[str, str], ...] = (),
        scheme: str = "sip",
    ) -> None:
        self.host = host
        self.user = user
        self.password = password
        self.port = port
        self.params = params
        self.headers = headers
        self.scheme = scheme

    def param(self, name: str) -> str | None:
        """The value of parameter `name` ("" for a flag such as `lr`), or None if absent."""
        return param_value(self.params, name.lower())

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def host_port(self) -> str:
        """`host` or `host:port`, as it appears in a URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        """The `transport` parameter, upper-cased (UDP, TCP, TLS, ...), or None."""
        value = self.param("transport")
        return value.upper() if value else None

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts += [":", _escape(self.password, _PASSWORD_SAFE)]
            parts.append("@")
        parts.append(self.host_port)
        for name, value in self.params:
            parts += [";", _escape(name, _PARAM_SAFE)]
            if value is not None:
                parts += ["=", _escape(value, _PARAM_SAFE)]
        if headers := self.headers:
            pairs = (f"{_escape(n, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for n, v in headers)
            parts += ["?", "&".join(pairs)]
        return "".join(parts)


class UserSlot:
    """A SIP URI as text with its user part left open: `uri.with_user(user)` is
    `str(replace(uri, user=user))` without the copy, the parameter escaping and
    the join, which is what a proxy pays per call for each gateway it dials.
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, uri: SipUri) -> None:
        self._head = uri.scheme + ":"
        self._tail = str(replace(uri, user=""))[len(self._head) :]

    def with_user(self, user: str) -> str:
        if user.isascii() and (user.isalnum() or (user[:1] == "+" and user[1:].isalnum())):
            return self._head + user + self._tail  # nothing to escape (the usual number)
        return self._head + _escape(user, _USER_SAFE) + self._tail


@dataclass(slots=True, unsafe_hash=True)
class TelUri:
    """A `tel:` URI: the number (visual separators kept) and its parameters."""

    number: str
    params: Params = ()
    scheme: str = "tel"

    def param(self, name: str) -> str | None:
        return param_value(self.params, name.lower())

    def __str__(self) -> str:
        params = "".join(
            f";{_escape(n, _PARAM_SAFE)}" + ("" if v is None else f"={_escape(v, _PARAM_SAFE)}")
            for n, v in self.params
        )
        return f"tel:{self.number}{params}"


@dataclass(slots=True, unsafe_hash=True)
class AbsoluteUri:
    """Any other absolute URI (RFC 3261 allows them); kept opaque so it can be forwarded."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri

SipUriParts = tuple[
    str, str | None, str | None, int | None, Params, tuple[tuple[str, str], ...], str
]
"""`SipUri`'s arguments in order, as the C reader gives them."""


def _accelerator() -> ModuleType | None:
    """The C readers of URIs and Vias (`_uri.c`) if this process loaded the compiled build."""
    try:
        from shared.sip import _uri
    except ImportError:
        return None
    return _uri


C_READERS: Final = _accelerator()
SIP_URI: Final[Callable[[str], SipUriParts | None] | None] = (
    None if C_READERS is None else C_READERS.sip_uri
)
"""The C reader of a plain SIP URI (`_uri.c`) in the compiled build, else None."""
VIA_BRANCH: Final[ParamReader | None] = None if C_READERS is None else C_READERS.via_branch
"""The C reader of a via-parm's branch (`via.branch_of`) in the compiled build, else None."""
ADDRESS_TAG: Final[ParamReader | None] = None if C_READERS is None else C_READERS.address_tag
"""The C reader of a From or To value's tag (`address.tag_of`) in the compiled build, else
None."""


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise `SipParseError` when it is malformed (including any whitespace).

    A plain SIP URI is read by the C reader when the compiled build has it (`_uri.c`), any
    other text by the Python below, which stays the one definition of what is accepted.
    """
    if SIP_URI is not None:
        parts = SIP_URI(text)
        if parts is not None:
            host, user, password, port, params, headers, scheme = parts
            return SipUri(host, user, password, port, params, headers, scheme)
    return _read_uri(text)


def _read_uri(text: str) -> Uri:
    """The Python reading of a URI: every one the C reader leaves, and all of them without it."""
    if " " in text or not text.isprintable():
        raise SipParseError("malformed URI (contains whitespace or control characters)")
    if text[:4] == "sip:":
        return _parse_sip("sip", text[4:])
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise SipParseError("malformed URI (no scheme)")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError("malformed tel URI (no number)")
        return TelUri(number, _uri_params(params) if params else ())
    if not rest:
        raise SipParseError("malformed URI (empty)")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user = password = None
    if "@" in rest:  # `in` and `partition`: `str.find` parses its arguments from a tuple
        userinfo, _, rest = rest.partition("@")
        user_text, has_password, password_text = userinfo.partition(":")
        if not user_text:
            raise SipParseError("malformed SIP URI (empty user)")
        user = _unescape(user_text)
        if has_password:
            password = _unescape(password_text)
    rest, question, header_text = rest.partition("?")
    hostport, semicolon, param_text = rest.partition(";")
    host, port = split_host_port(hostport)
    params = _uri_params(param_text) if semicolon else ()
    headers = _uri_headers(header_text) if question else ()
    return SipUri(host, user, password, port, params, headers, scheme)


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split host and port; IPv6 references must be bracketed (RFC 5118 §4.3)."""
    if text[:1] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError("malformed IPv6 reference (no closing bracket)")
        host = text[: end + 1]
        inner = host[1:-1]
        if ":" not in inner or not _IPV6_CHARS.issuperset(inner):
            raise SipParseError("malformed IPv6 reference")
        port_text = text[end + 1 :]
        if port_text and port_text[0] != ":":
            raise SipParseError("malformed host (text after IPv6 reference)")
        port_text = port_text[1:]
        has_port = bool(text[end + 1 :])
    else:
        host, has_colon, port_text = text.partition(":")
        has_port = bool(has_colon)
        if not host or not _HOSTNAME_CHARS.issuperset(host):
            raise SipParseError("malformed host")
    if not has_port:
        return host, None
    return host, parse_port(port_text)


def parse_port(text: str) -> int:
    """A port, 0 to 65535 in at most five ASCII digits; one `int` made (every Via and URI
    with a port reads one)."""
    if len(text) > 5 or not text.isdigit() or not text.isascii():
        raise SipParseError("malformed port")
    port = int(text)
    if port > 65535:
        raise SipParseError("malformed port")
    return port


def _uri_params(text: str) -> Params:
    params: list[tuple[str, str | None]] = []
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not name:
            raise SipParseError("malformed URI parameter (empty name)")
        params.append((_unescape(name).lower(), _unescape(value) if eq else None))
    return tuple(params)


def _uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    headers = []
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if not name or not eq:
            raise SipParseError("malformed URI header")
        headers.append((_unescape(name), _unescape(value)))
    return tuple(headers)
