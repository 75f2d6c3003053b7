"""The message model: the received lines, read lazily (RFC 3261 §7).

A message is its start line, one raw line per header field (folded
continuation lines kept verbatim) and its body.  A header value is decoded and
parsed into structure the first time someone reads it, and the result is
memoised in `_cache`; the writers (`shared.sip._writers`) edit the lines and
forget what they changed.
"""

from __future__ import annotations

from shared.sip._fields import value_of
from shared.sip.address import Address, parse_address
from shared.sip.errors import SipParseError
from shared.sip.headers import (
    DIALOG_KEYS,
    LIST_HEADERS,
    SINGLE_HEADERS,
    canonical_name,
    header_key,
    split_commas,
)
from shared.sip.values import (
    CSeq,
    parse_call_id,
    parse_cseq,
    parse_date,
    parse_delta_seconds,
    parse_max_forwards,
    parse_token_list,
)
from shared.sip.via import Via, parse_via


def _is_wildcard(contacts: list[str]) -> bool:
    if "*" not in contacts:
        return False
    if len(contacts) != 1:
        raise SipParseError("Contact '*' must be the only Contact value")
    return True


class ReadableMessage:
    """The reading half of `Message`: header access, typed accessors and validation.

    Requests and responses share it; see the module docstring for the model.

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

    def forget_parsed(self) -> None:
        """Drop what was parsed from the lines (it is parsed again if read): a message kept
        only in case it is needed again, as by a finished transaction, then holds bytes."""
        self._cache.clear()

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
        value = value_of(self._lines[index])
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
            fields.append((name, value_of(line)))
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
        value = value_of(lines[index])
        if count == 1:
            if key in LIST_HEADERS and "," in value:
                return split_commas(value)
            return [value]
        values = [value]
        for _ in range(count - 1):
            index = keys.index(key, index + 1)
            values.append(value_of(lines[index]))
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
