"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route (RFC 3261 §20, §25.1).

In the addr-spec form (no `<>`), everything after the first `;` is a header
parameter, not a URI parameter, and a URI holding `,`, `?` or `;` must be in
`<>` (RFC 4475 §3.1.2.13).  `str()` always writes the unambiguous name-addr form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from shared.sip.errors import SipParseError
from shared.sip.headers import split_commas
from shared.sip.params import (
    Params,
    format_params,
    param_of,
    param_value,
    parse_params,
    read_param,
    with_param,
)
from shared.sip.uri import ADDRESS_TAG, C_READERS, SipUri, SipUriParts, Uri, parse_uri

_TOKENS: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_QUOTED_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)

AddressParts = tuple[str | None, SipUriParts, Params]
"""What the C reader gives for a plain address: display name, `SipUri`'s arguments, params."""
SIP_ADDRESS: Final[Callable[[str], AddressParts | None] | None] = (
    None if C_READERS is None else C_READERS.sip_address
)
"""The C reader of a plain address (`_uri.c`) in the compiled build, else None."""


@dataclass(slots=True, init=False, unsafe_hash=True)
class Address:
    """One address: optional display name (unquoted), URI, header parameters."""

    uri: Final[Uri]
    display_name: Final[str | None]
    params: Final[Params]

    def __init__(self, uri: Uri, display_name: str | None = None, params: Params = ()) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params = params

    def param(self, name: str) -> str | None:
        """The value of header parameter `name` ("" for a flag), or None if absent."""
        return param_value(self.params, name.lower())

    @property
    def tag(self) -> str | None:
        return param_value(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """Contact `expires` parameter in seconds, or None; malformed values raise."""
        value = param_value(self.params, "expires")
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            raise SipParseError("malformed Contact expires parameter")
        return min(int(value), 2**32 - 1)

    @property
    def q(self) -> float | None:
        """Contact `q` parameter (0..1), or None."""
        value = param_value(self.params, "q")
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            raise SipParseError("malformed Contact q parameter") from None
        if not 0.0 <= q <= 1.0:
            raise SipParseError("Contact q parameter out of range")
        return q

    def with_param(self, name: str, value: str | None) -> Address:
        """A copy with header parameter `name` set (added or replaced), e.g. a To tag."""
        return replace(self, params=with_param(self.params, name, value))

    def __str__(self) -> str:
        uri = f"<{self.uri}>{format_params(self.params)}"
        if self.display_name is None:
            return uri
        escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" {uri}'


def parse_address(text: str) -> Address:
    """Parse one name-addr or addr-spec with header parameters.

    A plain one (printable ASCII, a plain SIP URI, a display name without an escape,
    parameters without a blank or a quote) is read by the C reader when the compiled build
    has it (`_uri.c`), any other by `_read_address`, which stays the one definition of what
    is accepted.
    """
    if SIP_ADDRESS is not None:
        found = SIP_ADDRESS(text)
        if found is not None:
            display, parts, params = found
            host, user, password, port, uri_params, headers, scheme = parts
            uri = SipUri(host, user, password, port, uri_params, headers, scheme)
            return Address(uri, display, params)
    return _read_address(text)


def _read_address(text: str) -> Address:
    """The Python reading of an address: every one the C reader leaves, all without it."""
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text[0] == '"':
        display, rest = _quoted_string(text)
        rest = rest.lstrip()
        if rest[:1] != "<":
            raise SipParseError("malformed address (quoted display name without <URI>)")
        return _name_addr(display, rest[1:])
    before, lt, rest = text.partition("<")
    if lt:
        before = before.strip()
        if before:
            if not _TOKENS.fullmatch(before):
                raise SipParseError("malformed display name (must be tokens or a quoted string)")
            display = before
        return _name_addr(display, rest)
    uri_text, semicolon, param_text = text.partition(";")
    uri_text = uri_text.rstrip()
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with '?' or ',' must be enclosed in <>")
    params = parse_params(semicolon + param_text, "address") if semicolon else ()
    return Address(parse_uri(uri_text), None, params)


def tag_of(text: str) -> str | None:
    """The `tag` header parameter of a From or To value, reading no more of it than that.

    A proxy reads the tags of nearly every message and the rest of the address
    seldom: the header parameters start where `parse_address` starts them (after
    the `>` of a name-addr, at the first `;` of an addr-spec) and only they are
    parsed, so a URI or display name nobody reads is not checked here (RFC 3261
    §16.3: a proxy forwards what it does not use untouched).  A quoted display
    name may hold `<`, `>` or `;`: that takes the whole parse.  Plain parameters are read by
    the C reader when the compiled build has it (`_uri.address_tag`), any others by
    `_tag_param`.
    """
    return read_param(text, ADDRESS_TAG, _tag_param)


def _tag_param(text: str) -> str | None:
    text = text.strip()
    if not text or '"' in text:
        return parse_address(text).tag
    if "<" in text:  # `partition`, no `str.find`: see `_name_addr`
        _, gt, params = text.partition("<")[2].partition(">")
        if not gt:
            raise SipParseError("malformed address (no closing >)")
        return param_of(params, "tag", "address")
    start = text.find(";")
    if start < 0:
        return None
    return param_of(text[start:], "tag", "address")


def _name_addr(display: str | None, text: str) -> Address:
    """`text`: what follows the `<`.  Cut by `partition`, not searched by `str.find`, which
    parses its arguments from a tuple (CPython 3.11): every address read passes here."""
    uri, gt, params = text.partition(">")
    if not gt:
        raise SipParseError("malformed address (no closing >)")
    return Address(parse_uri(uri), display, parse_params(params, "address"))


def _quoted_string(text: str) -> tuple[str, str]:
    """Split `"..."rest` into the unescaped content and the rest.

    A display name without a backslash (nearly every one a phone sends) is cut at its
    closing quote: the walk below and the unescaping `re.sub` took ~3 µs of the ~4 µs a
    From with a display name cost to read, compiled."""
    end = text.find('"', 1)
    if end > 0 and text.find("\\", 1, end) < 0:
        return text[1:end], text[end + 1 :]
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return _QUOTED_ESCAPE.sub(r"\1", text[1:i]), text[i + 1 :]
        i += 1
    raise SipParseError("unterminated quoted string")


def is_wildcard(contacts: list[str]) -> bool:
    """Whether Contact values `contacts` are the `*` of a REGISTER removing every binding,
    which must then stand alone."""
    if "*" not in contacts:
        return False
    if len(contacts) != 1:
        raise SipParseError("Contact '*' must be the only Contact value")
    return True


def parse_address_list(text: str) -> list[Address]:
    """Parse a comma-separated list (Route, Record-Route, Contact without `*`)."""
    return [parse_address(element) for element in split_commas(text)]
