"""SIP messages: parse once, read lazily, forward by editing the received bytes (RFC 3261 §7).

Parsing only frames the message: it splits the start line, cuts the header
block into one raw line per header field (folded continuation lines kept
verbatim), and slices the body by Content-Length.  A header value is decoded
and parsed into structure the first time someone reads it, and the result is
memoised.  Edits (prepend a Via, decrement Max-Forwards, pop a Route, ...)
replace or insert whole raw lines, so `to_bytes()` of a forwarded message
re-uses every untouched line as received, and an unedited message is returned
as the very bytes that came in.

Strings and bytes: the wire form (`to_bytes()`, `body`) is bytes; every
header value, method, reason phrase and URI text is `str` (UTF-8 decoded).
Header names may be given long or compact, in any case ("f", "From", "FROM").

Errors: anything wrong with the peer's bytes raises `SipParseError`, either
from `parse_message` (framing, start line, Content-Length) or from an
accessor when that header is first read; `validate()` reads every header
whose grammar this layer knows so a server can reject a malformed message
up front.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from shared.sip.address import Address, parse_address
from shared.sip.errors import SipError, SipParseError
from shared.sip.headers import (
    COMPACT_FORMS,
    DIALOG_KEYS,
    KEY_MEMO,
    LIST_HEADERS,
    SINGLE_HEADERS,
    TOKEN_BYTES,
    canonical_name,
    header_key,
    key_of_raw_name,
    split_commas,
)
from shared.sip.uri import SipUri, Uri, parse_uri
from shared.sip.values import (
    CSeq,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_date,
    parse_delta_seconds,
    parse_max_forwards,
    parse_token_list,
)
from shared.sip.via import Via, parse_via

SIP_VERSION: Final = "SIP/2.0"
MAX_MESSAGE_SIZE: Final = 65535
"""Largest message accepted: a UDP datagram's maximum, ample for TCP signalling too."""
MAX_HEADER_FIELDS: Final = 256
MAX_LINE_LENGTH: Final = 8192
DEFAULT_MAX_FORWARDS: Final = 70

_FOLD: Final = re.compile(rb"\r?\n[ \t]+")
_VERSION_SHAPE: Final = re.compile(rb"SIP/\d+\.\d+")


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise SipParseError(f"{what} is not valid UTF-8") from None


def _value_of(line: bytes) -> str:
    value = line[line.index(b":") + 1 :]
    if b"\n" in value:
        value = _FOLD.sub(b" ", value)
    return _decode(value.strip(b" \t\r\n"), "header value")


def _is_wildcard(contacts: list[str]) -> bool:
    if "*" not in contacts:
        return False
    if len(contacts) != 1:
        raise SipParseError("Contact '*' must be the only Contact value")
    return True


def _header_line(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} value contains a line break")
    return f"{name}: {value}".encode()


class Message:
    """Fields common to requests and responses; see the module docstring for the model.

    The instance owns two parallel lists, `_keys` (header keys, see
    `headers.header_key`) and `_lines` (each field's raw bytes without its line
    terminator).  `_wire` holds the received bytes until the first edit.
    """

    __slots__ = ("_body", "_cache", "_keys", "_lines", "_start", "_wire")

    def __init__(
        self, start: bytes, keys: list[str], lines: list[bytes], body: bytes, wire: bytes | None
    ) -> None:
        self._start = start
        self._keys = keys
        self._lines = lines
        self._body = body
        self._wire = wire
        self._cache: dict[str, object] = {}

    # ----- generic header access -------------------------------------------------------

    def header(self, name: str) -> str | None:
        """The first value of header `name`, or None when absent.

        For list headers (Via, Route, Contact, ...) that is the first
        comma-separated element, i.e. the topmost value.
        """
        return self._first(header_key(name))

    def _first(self, key: str) -> str | None:
        try:
            index = self._keys.index(key)
        except ValueError:
            return None
        value = _value_of(self._lines[index])
        if key in LIST_HEADERS and "," in value:
            return split_commas(value)[0]
        return value

    def headers(self, name: str) -> list[str]:
        """Every value of header `name` in order; list headers are split at their commas."""
        return self._raw_values(header_key(name))

    def field_lines(self, name: str) -> list[bytes]:
        """The raw lines of header `name` as received, for copying verbatim (§8.2.6)."""
        key = header_key(name)
        keys = self._keys
        count = keys.count(key)
        if count == 1:
            return [self._lines[keys.index(key)]]
        return [line for k, line in zip(keys, self._lines, strict=True) if k == key]

    def has_header(self, name: str) -> bool:
        return header_key(name) in self._keys

    def header_fields(self) -> list[tuple[str, str]]:
        """All header fields in order as (name as written, value); folds are unfolded."""
        fields = []
        for line in self._lines:
            name = line[: line.index(b":")].rstrip(b" \t").decode("ascii")
            fields.append((name, _value_of(line)))
        return fields

    # ----- typed accessors (parsed on first read, then memoised) -----------------------

    def _single(self, key: str) -> str:
        value = self._first(key)
        if value is None:
            raise SipParseError(f"missing {canonical_name(key)} header")
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via hop, topmost first."""
        vias = self._cache.get("via")
        if vias is None:
            values = self._raw_values("via")
            top = self._cache.get("top-via")
            if isinstance(top, Via):  # parsed already (match, stamp): not again
                vias = [top, *map(parse_via, values[1:])]
            else:
                vias = list(map(parse_via, values))
            self._cache["via"] = vias
        return vias  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        """The topmost Via; parses only that one.  Raises `SipParseError` when there is none."""
        via = self._cache.get("top-via")
        if via is None:
            via = parse_via(self._single("via"))
            self._cache["top-via"] = via
        return via  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        value = self._cache.get("call-id")
        if value is None:
            value = parse_call_id(self._single("call-id"))
            self._cache["call-id"] = value
        return value  # type: ignore[return-value]

    @property
    def cseq(self) -> CSeq:
        value = self._cache.get("cseq")
        if value is None:
            value = parse_cseq(self._single("cseq"))
            self._cache["cseq"] = value
        return value  # type: ignore[return-value]

    @property
    def from_(self) -> Address:
        value = self._cache.get("from")
        if value is None:
            value = parse_address(self._single("from"))
            self._cache["from"] = value
        return value  # type: ignore[return-value]

    @property
    def to(self) -> Address:
        value = self._cache.get("to")
        if value is None:
            value = parse_address(self._single("to"))
            self._cache["to"] = value
        return value  # type: ignore[return-value]

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent (RFC 2543 peers omit it)."""
        if "max-forwards" not in self._keys:
            return None
        value = self._cache.get("max-forwards")
        if value is None:
            value = parse_max_forwards(self._single("max-forwards"))
            self._cache["max-forwards"] = value
        return value  # type: ignore[return-value]

    @property
    def routes(self) -> list[Address]:
        return self._address_list("route")

    @property
    def record_routes(self) -> list[Address]:
        return self._address_list("record-route")

    @property
    def contacts(self) -> list[Address]:
        """Contact addresses; empty for the `Contact: *` wildcard (see `contact_is_wildcard`)."""
        contacts = self._cache.get("contact")
        if contacts is None:
            values = self._raw_values("contact")
            wildcard = _is_wildcard(values)
            contacts = [] if wildcard else [parse_address(raw) for raw in values]
            self._cache["contact"] = contacts
        return contacts  # type: ignore[return-value]

    @property
    def contact_is_wildcard(self) -> bool:
        """True for `Contact: *` (REGISTER removing all bindings); `*` must stand alone."""
        return _is_wildcard(self._raw_values("contact"))

    @property
    def expires(self) -> int | None:
        """Expires header in seconds, or None when absent."""
        value = self.header("expires")
        return None if value is None else parse_delta_seconds(value, "Expires")

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    @property
    def content_length(self) -> int:
        """The body's length (equal to the Content-Length header when one was received)."""
        return len(self._body)

    @property
    def body(self) -> bytes:
        """The body exactly as received (multipart bodies are not looked into)."""
        return self._body

    def _raw_values(self, key: str) -> list[str]:
        # list.count/index scan the keys in C: most headers occur zero times or once,
        # and lookups outnumber lines, so this beats a Python loop over every line.
        keys = self._keys
        count = keys.count(key)
        if not count:
            return []
        lines = self._lines
        index = keys.index(key)
        value = _value_of(lines[index])
        if count == 1:
            if key in LIST_HEADERS and "," in value:
                return split_commas(value)
            return [value]
        values = [value]
        for _ in range(count - 1):
            index = keys.index(key, index + 1)
            values.append(_value_of(lines[index]))
        if key not in LIST_HEADERS:
            return values
        return [element for value in values for element in split_commas(value)]

    def _address_list(self, key: str) -> list[Address]:
        value = self._cache.get(key)
        if value is None and key not in self._keys:
            return []
        if value is None:
            value = [parse_address(raw) for raw in self._raw_values(key)]
            self._cache[key] = value
        return value  # type: ignore[return-value]

    # ----- validation ------------------------------------------------------------------

    def validate(self) -> None:
        """Check everything this layer can check; raise `SipParseError` naming the problem.

        Required headers (Via, From, To, Call-ID, CSeq) present, single-valued
        headers not repeated, and every header with a known grammar parses.
        Max-Forwards is not required so RFC 2543 peers keep working.
        """
        keys = self._keys
        for key in DIALOG_KEYS:
            if key not in keys:
                raise SipParseError(f"missing {canonical_name(key)} header")
        for key in SINGLE_HEADERS:
            if keys.count(key) > 1:
                raise SipParseError(f"more than one {canonical_name(key)} header")
        _ = (self.call_id, self.cseq, self.from_, self.to, self.max_forwards)
        for via in self.vias:
            _ = (via.ttl, via.rport)
        _ = (self.routes, self.record_routes, self.contacts, self.expires)
        date = self.header("date")
        if date is not None:
            parse_date(date)
        for key in ("require", "proxy-require", "supported"):
            for value in self._raw_values(key):
                parse_token_list(value)

    # ----- edits -----------------------------------------------------------------------

    def _edited(self, key: str | None = None) -> None:
        """The bytes changed: forget what was read of header `key` (of Via, the top one too)."""
        self._wire = None
        if key is not None:
            self._cache.pop(key, None)
            if key == "via":
                self._cache.pop("top-via", None)

    def _insert_before_first(self, key: str, line: bytes) -> None:
        try:
            index = self._keys.index(key)
        except ValueError:
            index = 0
        self._keys.insert(index, key)
        self._lines.insert(index, line)

    def _pop_first_element(self, key: str) -> None:
        """Remove the first comma-separated element of the first `key` field."""
        try:
            index = self._keys.index(key)
        except ValueError:
            return
        line = self._lines[index]
        elements = split_commas(_value_of(line)) if b"," in line else None
        if elements is None or len(elements) == 1:
            del self._keys[index]
            del self._lines[index]
        else:
            name = line[: line.index(b":")].rstrip(b" \t").decode("ascii")
            self._lines[index] = _header_line(name, ", ".join(elements[1:]))

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header field at the end, or (`first=True`) above the existing ones of its name."""
        key = header_key(name)
        line = _header_line(name, value)
        if first:
            self._insert_before_first(key, line)
        else:
            self._keys.append(key)
            self._lines.append(line)
        self._edited(key)

    def set_header(self, name: str, value: str) -> None:
        """Replace every field of header `name` with one field carrying `value`."""
        key = header_key(name)
        line = _header_line(name, value)
        try:
            index = self._keys.index(key)
        except ValueError:
            self._keys.append(key)
            self._lines.append(line)
        else:
            self._lines[index] = line
            self._remove_after(key, index + 1)
        self._edited(key)

    def remove_header(self, name: str) -> int:
        """Remove every field of header `name`; return how many were removed."""
        key = header_key(name)
        removed = self._remove_after(key, 0)
        if removed:
            self._edited(key)
        return removed

    def _remove_after(self, key: str, start: int) -> int:
        keys = self._keys
        doomed = [i for i in range(start, len(keys)) if keys[i] == key]
        for i in reversed(doomed):
            del keys[i]
            del self._lines[i]
        return len(doomed)

    def prepend_via(self, via: Via | str) -> None:
        """Put a new topmost Via (a proxy or UAC sending a request)."""
        self._insert_before_first("via", _header_line("Via", str(via)))
        self._set_top_via(via, keep=0)

    def _set_top_via(self, via: Via | str, *, keep: int) -> None:
        """After an edit of the Via list: a given `Via` is known already, and so is the
        rest of a list already read, from element `keep` on (cached values are never
        changed in place: copies share them)."""
        vias = self._cache.get("via")
        self._edited("via")
        if isinstance(via, Via):
            self._cache["top-via"] = via  # known already: spares parsing it back
            if vias is not None:
                self._cache["via"] = [via, *vias[keep:]]  # type: ignore[index]

    def replace_top_via(self, via: Via | str) -> None:
        """Rewrite the topmost Via, e.g. to add `received`/`rport` (RFC 3261 §18.2.1, RFC 3581)."""
        self._pop_first_element("via")
        self._insert_before_first("via", _header_line("Via", str(via)))
        self._set_top_via(via, keep=1)

    def pop_via(self) -> Via:
        """Remove and return the topmost Via (a proxy forwarding a response, §16.7 step 3)."""
        top = self.top_via
        vias = self._cache.get("via")
        self._pop_first_element("via")
        self._edited("via")
        if vias is not None:
            self._cache["via"] = vias[1:]  # type: ignore[index]
        return top

    def decrement_max_forwards(self, default: int = DEFAULT_MAX_FORWARDS) -> int:
        """Decrement Max-Forwards (adding it as `default - 1` when absent) and return the new value.

        Raises `SipError(483)` when it is already zero: the request must not be forwarded.
        """
        current = self.max_forwards
        if current is None:
            current = default
        if current <= 0:
            raise SipError("Too Many Hops", 483)
        value = current - 1
        line = b"Max-Forwards: %d" % value
        try:
            self._lines[self._keys.index("max-forwards")] = line
        except ValueError:
            self._keys.insert(0, "max-forwards")
            self._lines.insert(0, line)
        self._edited()
        self._cache["max-forwards"] = value
        return value

    def pop_route(self) -> Address | None:
        """Remove and return the topmost Route value (loose routing, §16.4), or None."""
        routes = self.routes
        if not routes:
            return None
        self._pop_first_element("route")
        self._edited()
        self._cache["route"] = routes[1:]
        return routes[0]

    def add_record_route(self, address: Address | str) -> None:
        """Put a new topmost Record-Route value (a proxy staying on the dialog path, §16.6)."""
        self._insert_before_first("record-route", _header_line("Record-Route", str(address)))
        self._edited("record-route")

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length follows, Content-Type is set when given."""
        self._body = body
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        self.set_header("Content-Length", str(len(body)))

    # ----- serialisation ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The message on the wire.

        Unedited: the received bytes (without any trailing datagram garbage).
        Edited or built: the start line and raw header lines joined with CRLF,
        always with a Content-Length so it can go out on a stream transport.
        """
        wire = self._wire
        if wire is not None:
            return wire
        if "content-length" not in self._keys:
            self._keys.append("content-length")
            self._lines.append(b"Content-Length: %d" % len(self._body))
        wire = b"\r\n".join([self._start, *self._lines, b"", self._body])
        self._wire = wire
        return wire

    def copy(self) -> Message:
        """An independent copy to edit (a forking proxy sends one per branch)."""
        raise NotImplementedError  # Request and Response copy their start-line fields too

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request.  `method` is case-sensitive as RFC 3261 says (`INVITE` ≠ `invite`)."""

    __slots__ = ("method", "uri_text")

    method: str
    uri_text: str
    """The Request-URI exactly as received (or as last set)."""

    def __init__(
        self,
        method: str,
        uri_text: str,
        *,
        keys: list[str],
        lines: list[bytes],
        body: bytes = b"",
        wire: bytes | None = None,
        start: bytes | None = None,
    ) -> None:
        """`start`: the request line as received, when parsing (saves re-encoding it)."""
        if start is None:
            start = f"{method} {uri_text} {SIP_VERSION}".encode()
        super().__init__(start, keys, lines, body, wire)
        self.method = method
        self.uri_text = uri_text

    @classmethod
    def build(
        cls, method: str, uri: Uri | str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Request:
        """A new request from (name, value) header pairs; Content-Length is added."""
        keys, lines = _header_lists(headers)
        return cls(method, str(uri), keys=keys, lines=lines, body=body)

    @property
    def uri(self) -> Uri:
        """The parsed Request-URI; a SIP URI carrying headers is rejected (RFC 4475 §3.1.2.11)."""
        uri = self._cache.get("uri")
        if uri is None:
            uri = parse_uri(self.uri_text)
            if isinstance(uri, SipUri) and uri.headers:
                raise SipParseError("Request-URI must not contain headers")
            self._cache["uri"] = uri
        return uri  # type: ignore[return-value]

    def set_uri(self, uri: Uri | str) -> None:
        """Rewrite the Request-URI (strict-route fix-up, registrar lookup, gateway routing)."""
        self.uri_text = str(uri)
        self._start = f"{self.method} {self.uri_text} {SIP_VERSION}".encode()
        self._edited("uri")

    def validate(self) -> None:
        """`Message.validate`, plus the Request-URI and CSeq method matching the request line."""
        super().validate()
        _ = self.uri
        if self.cseq.method != self.method:
            raise SipParseError("CSeq method does not match the request method")

    def copy(self) -> Request:
        clone = Request(
            self.method, self.uri_text, keys=self._keys.copy(), lines=self._lines.copy(),
            body=self._body, wire=self._wire, start=self._start,
        )  # fmt: skip
        clone._cache.update(self._cache)
        return clone

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    status: int
    reason: str

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        keys: list[str],
        lines: list[bytes],
        body: bytes = b"",
        wire: bytes | None = None,
        start: bytes | None = None,
    ) -> None:
        """`start`: the status line as received, when parsing (saves re-encoding it)."""
        if start is None:
            start = f"{SIP_VERSION} {status} {reason}".encode()
        super().__init__(start, keys, lines, body, wire)
        self.status = status
        self.reason = reason

    @classmethod
    def build(
        cls, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Response:
        """A new response from (name, value) header pairs; Content-Length is added."""
        keys, lines = _header_lists(headers)
        return cls(status, reason, keys=keys, lines=lines, body=body)

    def copy(self) -> Response:
        clone = Response(
            self.status, self.reason, keys=self._keys.copy(), lines=self._lines.copy(),
            body=self._body, wire=self._wire, start=self._start,
        )  # fmt: skip
        clone._cache.update(self._cache)
        return clone

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _header_lists(headers: Iterable[tuple[str, str]]) -> tuple[list[str], list[bytes]]:
    keys = []
    lines = []
    for name, value in headers:
        keys.append(header_key(name))
        lines.append(_header_line(name, value))
    return keys, lines


# ----- framing and parsing -------------------------------------------------------------


def find_head_end(data: bytes) -> tuple[int, int] | None:
    """Locate the empty line ending the header block: (end of headers, start of body), or None.

    Accepts CRLF and bare-LF line endings (RFC 5118's archive uses LF).
    """
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, len(data) if crlf < 0 else crlf)
    if crlf >= 0 and lf < 0:
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return None


def peek_header(data: bytes, key: str) -> bytes | None:
    """The first raw value of header `key` (see `headers.header_key`) of unparsed bytes.

    For deciding where a message goes before anyone parses it (which edge worker
    owns its call). The usual and the compact spelling are found with a
    ``bytes.find`` each, the earlier one wins; other cases and space before the
    colon take a scan of the header lines with the parser's own name rules. The
    value is stripped, not unfolded or split.
    """
    found = -1
    width = 0
    for needle in _needles(key):
        at = data.find(needle)
        if at >= 0 and (found < 0 or at < found):
            found, width = at, len(needle)
    blank_before = found >= 0 and (
        data.find(b"\n\n", 0, found + 1) >= 0 or data.find(b"\n\r\n", 0, found + 1) >= 0
    )
    if found >= 0 and not blank_before:
        start = found + width
        stop = data.find(b"\n", start)
        return data[start : len(data) if stop < 0 else stop].strip()
    head = find_head_end(data)
    for line in data[: len(data) if head is None else head[0]].split(b"\n")[1:]:
        colon = line.find(b":")
        try:
            if colon > 0 and key_of_raw_name(line[: colon + 1]) == key:
                return line[colon + 1 :].strip()
        except SipParseError:
            continue
    return None


def _needles(key: str) -> tuple[bytes, ...]:
    """``b"\\nName:"`` in the usual and the compact spelling of header `key`."""
    needles = _PEEK_NEEDLES.get(key)
    if needles is None:
        names = [canonical_name(key), *(c for c, k in COMPACT_FORMS.items() if k == key)]
        needles = _PEEK_NEEDLES[key] = tuple(b"\n" + name.encode() + b":" for name in names)
    return needles


_PEEK_NEEDLES: dict[str, tuple[bytes, ...]] = {}


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Frame and parse one SIP message; raise `SipParseError` when it is malformed.

    `stream=False` (UDP): the datagram is one message; without Content-Length
    the body is the rest of the datagram; octets after Content-Length are
    ignored (RFC 4475 §3.1.1.8).  `stream=True` (TCP/TLS): Content-Length is
    mandatory (RFC 3261 §18.3) and `data` must hold the whole message.
    Leading CRLFs (keep-alives) are skipped.  Only framing, the start line,
    the header names and Content-Length are checked here; header values are
    checked when read or by `validate()`.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large", 513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    found = find_head_end(data)
    if found is None:
        if stream:
            raise SipParseError("incomplete message: no empty line after the headers")
        head = data.rstrip(b"\r\n")
        head_end = body_start = len(data)
    else:
        head_end, body_start = found
        head = data[:head_end]
    newline = head.find(b"\n")
    crlf = head[newline - 1 : newline] == b"\r"
    raw_lines = head.split(b"\r\n") if crlf else head.split(b"\n")
    if _has_bare_line_break(head, crlf, len(raw_lines) - 1):
        raise SipParseError("bare CR or LF inside a header field")
    if len(raw_lines) > MAX_HEADER_FIELDS:
        raise SipParseError("too many header fields", 400)
    if not raw_lines[0]:
        raise SipParseError("empty start line")
    if len(head) > MAX_LINE_LENGTH and max(map(len, raw_lines)) > MAX_LINE_LENGTH:
        raise SipParseError("header line too long")
    lines = raw_lines[1:]
    if b"\n " in head or b"\n\t" in head:
        lines = _join_folded(lines)
    keys = _keys_of(lines)
    cl_count = keys.count("content-length")
    if cl_count > 1:
        raise SipParseError("more than one Content-Length header")
    cl_line = lines[keys.index("content-length")] if cl_count else None
    if cl_line is None:
        if stream:
            raise SipParseError("missing Content-Length on a stream transport")
        body = data[body_start:]
        wire = None
    else:
        declared = cl_line[cl_line.index(b":") + 1 :].strip()
        if not declared.isdigit() or len(declared) > 9:
            parse_content_length(_value_of(cl_line))  # raises the precise error
        end = body_start + int(declared)
        if end <= len(data):
            body = data[body_start:end]
            wire = data if end == len(data) else data[:end]
        elif stream or crlf:
            raise SipParseError("Content-Length larger than the message")
        else:
            # Bare-LF text is hand-written, not wire format, and its Content-Length
            # was typically counted with CRLF (RFC 5118's archive): trust the datagram.
            body = data[body_start:]
            wire = None
            lines[keys.index("content-length")] = b"Content-Length: %d" % len(body)
    return _start_line(raw_lines[0], keys, lines, body, wire)


def _has_bare_line_break(head: bytes, crlf: bool, breaks: int) -> bool:
    """Whether a CR or LF stands anywhere but in a line ending (`breaks` of them).

    A bare one inside a value (`branch=z9hG4bKa\\r;rport`) would be written back
    into every message built from it, a header injection: the whole message is
    refused instead.  Two byte counts (C speed) over the head, on the hot path.
    In the lenient bare-LF form a CR may still end a line (`\\r\\n`).
    """
    if crlf:
        return head.count(b"\n") != breaks or head.count(b"\r") != breaks
    return b"\r" in head and head.count(b"\r") != head.count(b"\r\n") + head.endswith(b"\r")


def _join_folded(lines: list[bytes]) -> list[bytes]:
    """Glue continuation lines to their header field, keeping the fold bytes as received."""
    joined: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not joined:
                raise SipParseError("continuation line before the first header")
            joined[-1] += b"\r\n" + line
        else:
            joined.append(line)
    return joined


def _keys_of(lines: list[bytes]) -> list[str]:
    """The header key of every field line.

    The memo is keyed by the name *with* its colon, so a line without a colon
    (name slice `b""`) can never hit it; misses take the checked slow path.
    """
    keys = list(map(KEY_MEMO.get, [line[: line.find(b":") + 1] for line in lines]))
    if None in keys:
        for index, key in enumerate(keys):
            if key is None:
                keys[index] = _key_of_line(lines[index])
    return keys  # type: ignore[return-value]


def _key_of_line(line: bytes) -> str:
    colon = line.find(b":")
    if colon <= 0:
        raise SipParseError("malformed header line (no name or colon)")
    return key_of_raw_name(line[: colon + 1])


def _start_line(
    start: bytes, keys: list[str], lines: list[bytes], body: bytes, wire: bytes | None
) -> Request | Response:
    if start.startswith(b"SIP/"):
        parts = start.split(b" ", 2)
        if len(parts) < 2:
            raise SipParseError("malformed status line")
        _check_version(parts[0])
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or code[:1] == b"0":
            raise SipParseError("malformed status code")
        reason = _decode(parts[2], "reason phrase") if len(parts) == 3 else ""
        return Response(
            int(code), reason, keys=keys, lines=lines, body=body, wire=wire, start=start
        )
    parts = start.split(b" ")
    if len(parts) != 3 or not parts[1]:
        raise SipParseError("malformed request line (need method SP URI SP version)")
    method, uri, version = parts
    _check_version(version)
    if not TOKEN_BYTES.issuperset(method) or not method:
        raise SipParseError("malformed method")
    if uri[:1] == b"<":
        raise SipParseError("Request-URI must not be enclosed in <>")
    return Request(
        method.decode("ascii"), _decode(uri, "Request-URI"),
        keys=keys, lines=lines, body=body, wire=wire, start=start,
    )  # fmt: skip


def _check_version(version: bytes) -> None:
    if version == b"SIP/2.0":
        return
    if _VERSION_SHAPE.fullmatch(version):
        raise SipParseError(f"{version.decode()} is not supported", 505)
    raise SipParseError("malformed SIP version")
