"""The message model: the received lines, read lazily (RFC 3261 §7).

A message is its start line, one raw line per header field (folded
continuation lines kept verbatim) and its body.  A header value is decoded and
parsed into structure the first time someone reads it, and the result is
kept in a typed slot per field (no dict of cached values: a slot is a pointer
read, natively so once compiled); the writers (`shared.sip._writers`) edit the
lines and forget, or set, the slots of what they changed.
"""

from __future__ import annotations

from typing import Final

from shared.sip._fields import value_of
from shared.sip._keys import key_count, key_index
from shared.sip.address import Address, is_wildcard, parse_address, tag_of
from shared.sip.errors import SipParseError
from shared.sip.headers import (
    DIALOG_KEYS,
    LIST_HEADERS,
    canonical_name,
    first_repeated_single,
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
from shared.sip.via import Via, branch_of, parse_via

_FROM_TAG: Final = 1
_TO_TAG: Final = 2


class ReadableMessage:
    """The reading half of `Message`: header access, typed accessors and validation.

    Requests and responses share it; see the module docstring for the model.

    The instance owns two parallel lists, `_keys` (header keys, see
    `headers.header_key`) and `_lines` (each field's raw bytes without its line
    terminator).  `_wire` holds the received bytes until the first edit.  The
    other slots hold what was parsed from the lines, None until first read.
    """

    __slots__ = (
        "_body",
        "_call_id",
        "_contacts",
        "_cseq",
        "_from",
        "_from_tag",
        "_keys",
        "_lines",
        "_max_forwards",
        "_record_routes",
        "_routes",
        "_start",
        "_tags_read",
        "_to",
        "_to_tag",
        "_top_via",
        "_vias",
        "_wire",
    )

    def __init__(
        self, start: bytes, keys: list[str], lines: list[bytes], body: bytes, wire: bytes | None
    ) -> None:
        self._start = start
        self._keys = keys
        self._lines = lines
        self._body = body
        self._wire = wire
        self._top_via: Via | None = None
        self._vias: list[Via] | None = None
        self._call_id: str | None = None
        self._cseq: CSeq | None = None
        self._from: Address | None = None
        self._to: Address | None = None
        self._from_tag: str | None = None
        self._to_tag: str | None = None
        self._tags_read = 0
        """Which of `_from_tag` (1) and `_to_tag` (2) hold the header's tag (None: no tag)."""
        self._max_forwards: int | None = None
        self._routes: list[Address] | None = None
        self._record_routes: list[Address] | None = None
        self._contacts: list[Address] | None = None

    def forget_parsed(self) -> None:
        """Drop what was parsed from the lines (it is parsed again if read): a message kept
        only in case it is needed again, as by a finished transaction, then holds bytes."""
        self._top_via = self._vias = None
        self._call_id = self._cseq = self._from = self._to = self._max_forwards = None
        self._from_tag = self._to_tag = None
        self._tags_read = 0
        self._routes = self._record_routes = self._contacts = None

    def _forget(self, key: str) -> None:
        """Forget what was parsed of header `key` (its lines changed)."""
        if key == "via":
            self._top_via = self._vias = None
        elif key == "call-id":
            self._call_id = None
        elif key == "cseq":
            self._cseq = None
        elif key == "from":
            self._from = self._from_tag = None
            self._tags_read &= ~_FROM_TAG
        elif key == "to":
            self._to = self._to_tag = None
            self._tags_read &= ~_TO_TAG
        elif key == "max-forwards":
            self._max_forwards = None
        elif key == "route":
            self._routes = None
        elif key == "record-route":
            self._record_routes = None
        elif key == "contact":
            self._contacts = None

    def _copy_parsed(self, clone: ReadableMessage) -> None:
        """Give `clone` (a copy of the lines) what was parsed of them: parsed values are
        never changed in place, so the two messages share them."""
        clone._top_via = self._top_via
        clone._vias = self._vias
        clone._call_id = self._call_id
        clone._cseq = self._cseq
        clone._from = self._from
        clone._to = self._to
        clone._from_tag = self._from_tag
        clone._to_tag = self._to_tag
        clone._tags_read = self._tags_read
        clone._max_forwards = self._max_forwards
        clone._routes = self._routes
        clone._record_routes = self._record_routes
        clone._contacts = self._contacts

    # ----- generic header access -------------------------------------------------------

    def header(self, name: str) -> str | None:
        """The first value of header `name`, or None when absent.

        For list headers (Via, Route, Contact, ...) that is the first
        comma-separated element, i.e. the topmost value.
        """
        return self._first(header_key(name))

    def _first(self, key: str) -> str | None:
        try:
            index = key_index(self._keys, key)
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
        count = key_count(keys, key)
        if count == 1:
            return [self._lines[key_index(keys, key)]]
        return [line for k, line in zip(keys, self._lines, strict=True) if k == key]

    def has_header(self, name: str) -> bool:
        return key_count(self._keys, header_key(name)) > 0

    def header_fields(self) -> list[tuple[str, str]]:
        """All header fields in order as (name as written, value); folds are unfolded."""
        fields = []
        for line in self._lines:
            name = line[: line.index(b":")].rstrip(b" \t").decode("ascii")
            fields.append((name, value_of(line)))
        return fields

    # ----- typed accessors (parsed on first read, then kept in their slot) -------------

    def _single(self, key: str) -> str:
        value = self._first(key)
        if value is None:
            raise SipParseError(f"missing {canonical_name(key)} header")
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via hop, topmost first."""
        vias = self._vias
        if vias is None:
            top = self._top_via
            keys = self._keys
            if top is None:
                vias = list(map(parse_via, self._raw_values("via")))
            elif key_count(keys, "via") == 1 and self._lines[key_index(keys, "via")].find(b",") < 0:
                vias = [top]  # one line of one hop (a phone's request): nothing to decode
            else:  # the top one parsed already (match, stamp): not again
                vias = [top, *map(parse_via, self._raw_values("via")[1:])]
            self._vias = vias
        return vias

    @property
    def top_via(self) -> Via:
        """The topmost Via; parses only that one.  Raises `SipParseError` when there is none."""
        via = self._top_via
        if via is None:
            via = self._top_via = parse_via(self._single("via"))
        return via

    @property
    def top_branch(self) -> str | None:
        """The topmost Via's branch, all that transaction matching reads of it (§17.1.3):
        only its parameters are parsed, unless the Via was parsed whole already."""
        via = self._top_via
        return via.branch if via is not None else branch_of(self._single("via"))

    @property
    def call_id(self) -> str:
        value = self._call_id
        if value is None:
            value = self._call_id = parse_call_id(self._single("call-id"))
        return value

    @property
    def cseq(self) -> CSeq:
        value = self._cseq
        if value is None:
            value = self._cseq = parse_cseq(self._single("cseq"))
        return value

    @property
    def from_(self) -> Address:
        value = self._from
        if value is None:
            value = self._from = parse_address(self._single("from"))
        return value

    @property
    def to(self) -> Address:
        value = self._to
        if value is None:
            value = self._to = parse_address(self._single("to"))
        return value

    @property
    def from_tag(self) -> str | None:
        """From's tag; reads only the header parameters unless From was parsed whole."""
        if self._tags_read & _FROM_TAG:
            return self._from_tag
        whole = self._from
        tag = whole.tag if whole is not None else tag_of(self._single("from"))
        self._from_tag = tag
        self._tags_read |= _FROM_TAG
        return tag

    @property
    def to_tag(self) -> str | None:
        """To's tag; reads only the header parameters unless To was parsed whole."""
        if self._tags_read & _TO_TAG:
            return self._to_tag
        whole = self._to
        tag = whole.tag if whole is not None else tag_of(self._single("to"))
        self._to_tag = tag
        self._tags_read |= _TO_TAG
        return tag

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent (RFC 2543 peers omit it)."""
        if not key_count(self._keys, "max-forwards"):
            return None
        value = self._max_forwards
        if value is None:
            value = self._max_forwards = parse_max_forwards(self._single("max-forwards"))
        return value

    @property
    def routes(self) -> list[Address]:
        routes = self._routes
        if routes is None:
            routes = self._routes = self._address_list("route")
        return routes

    @property
    def record_routes(self) -> list[Address]:
        routes = self._record_routes
        if routes is None:
            routes = self._record_routes = self._address_list("record-route")
        return routes

    @property
    def contacts(self) -> list[Address]:
        """Contact addresses; empty for the `Contact: *` wildcard (see `contact_is_wildcard`)."""
        contacts = self._contacts
        if contacts is None:
            values = self._raw_values("contact")
            wildcard = is_wildcard(values)
            contacts = [] if wildcard else [parse_address(raw) for raw in values]
            self._contacts = contacts
        return contacts

    @property
    def contact_is_wildcard(self) -> bool:
        """True for `Contact: *` (REGISTER removing all bindings); `*` must stand alone."""
        return is_wildcard(self._raw_values("contact"))

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
        # The keys are counted and searched in C (`_keys`): most headers occur zero times or
        # once, and lookups outnumber lines, so this beats a Python loop over every line.
        keys = self._keys
        count = key_count(keys, key)
        if not count:
            return []
        lines = self._lines
        index = key_index(keys, key)
        value = value_of(lines[index])
        if count == 1:
            if key in LIST_HEADERS and "," in value:
                return split_commas(value)
            return [value]
        values = [value]
        for _ in range(count - 1):
            index = key_index(keys, key, index + 1)
            values.append(value_of(lines[index]))
        if key not in LIST_HEADERS:
            return values
        return [element for value in values for element in split_commas(value)]

    def _address_list(self, key: str) -> list[Address]:
        if not key_count(self._keys, key):
            return []
        return [parse_address(raw) for raw in self._raw_values(key)]

    # ----- validation ------------------------------------------------------------------

    def validate(self) -> None:
        """Check everything this layer can check; raise `SipParseError` naming the problem.

        Required headers (Via, From, To, Call-ID, CSeq) present, single-valued
        headers not repeated, and every header with a known grammar parses.
        Max-Forwards is not required so RFC 2543 peers keep working.
        """
        self._validate_fields()
        for via in self.vias:
            _ = (via.ttl, via.rport)
        _ = (self.routes, self.record_routes, self.contacts, self.expires)
        self._validate_date()
        for key in ("require", "proxy-require", "supported"):
            for value in self._raw_values(key):
                parse_token_list(value)

    def _validate_fields(self) -> None:
        """The required headers present, the single ones not repeated, and what every
        transaction and dialog reads parsed: Call-ID, CSeq, From, To, Max-Forwards, Vias."""
        keys = self._keys
        present = set(keys)
        if not present.issuperset(DIALOG_KEYS):
            missing = next(key for key in DIALOG_KEYS if key not in present)
            raise SipParseError(f"missing {canonical_name(missing)} header")
        repeated = first_repeated_single(keys, present)
        if repeated is not None:
            raise SipParseError(f"more than one {canonical_name(repeated)} header")
        _ = (self.call_id, self.cseq, self.from_, self.to, self.max_forwards, self.vias)

    def _validate_date(self) -> None:
        if key_count(self._keys, "date"):
            parse_date(self._single("date"))
