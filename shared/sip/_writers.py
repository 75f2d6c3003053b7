"""The message writers: edit the raw lines, and serialise (RFC 3261 §16.6, §18).

Edits (prepend a Via, decrement Max-Forwards, pop a Route, ...) replace or
insert whole raw lines, so `to_bytes()` of a forwarded message re-uses every
untouched line as received, and an unedited message is returned as the very
bytes that came in.  Each edit forgets what the model had read of the header it
changed, or keeps what it knows already (a Via it was given) so nothing is
parsed back.
"""

from __future__ import annotations

from typing import Final

from shared.sip._fields import header_line, value_of
from shared.sip._keys import key_count, key_index
from shared.sip._model import ReadableMessage
from shared.sip.address import Address
from shared.sip.errors import SipError
from shared.sip.headers import header_key, split_commas
from shared.sip.via import Via

DEFAULT_MAX_FORWARDS: Final = 70


class Message(ReadableMessage):
    """A SIP message to read and edit: requests and responses are both one.

    Reading is `ReadableMessage`'s (`shared.sip._model`); this adds the edits
    and the serialisation.
    """

    __slots__ = ()

    # ----- edits -----------------------------------------------------------------------

    def _edited(self, key: str | None = None) -> None:
        """The bytes changed: forget what was read of header `key` (of Via, the top one too)."""
        self._wire = None
        if key is not None:
            self._forget(key)

    def _insert_before_first(self, key: str, line: bytes) -> None:
        try:
            index = key_index(self._keys, key)
        except ValueError:
            index = 0
        self._keys.insert(index, key)
        self._lines.insert(index, line)

    def _pop_first_element(self, key: str) -> None:
        """Remove the first comma-separated element of the first `key` field."""
        try:
            index = key_index(self._keys, key)
        except ValueError:
            return
        line = self._lines[index]
        elements = split_commas(value_of(line)) if line.find(b",") >= 0 else None
        if elements is None or len(elements) == 1:
            del self._keys[index]
            del self._lines[index]
        else:
            name = line[: line.index(b":")].rstrip(b" \t").decode("ascii")
            self._lines[index] = header_line(name, ", ".join(elements[1:]))

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header field at the end, or (`first=True`) above the existing ones of its name."""
        key = header_key(name)
        line = header_line(name, value)
        if first:
            self._insert_before_first(key, line)
        else:
            self._keys.append(key)
            self._lines.append(line)
        self._edited(key)

    def set_header(self, name: str, value: str) -> None:
        """Replace every field of header `name` with one field carrying `value`."""
        key = header_key(name)
        line = header_line(name, value)
        try:
            index = key_index(self._keys, key)
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

    def prepend_via(self, via: Via | str, parsed: Via | None = None) -> None:
        """Put a new topmost Via (a proxy or UAC sending a request).

        `parsed`: the text `via` as the `Via` it parses to, when the writer has both (a
        proxy's own Via, made from its parts): kept, so it is never parsed back.
        """
        self._insert_before_first("via", header_line("Via", str(via)))
        self._set_top_via(via if parsed is None else parsed, keep=0)

    def _set_top_via(self, via: Via | str, *, keep: int) -> None:
        """After an edit of the Via list: a given `Via` is known already, and so is the
        rest of a list already read, from element `keep` on (parsed values are never
        changed in place: copies share them)."""
        vias = self._vias
        self._edited("via")
        if isinstance(via, Via):
            self._top_via = via  # known already: spares parsing it back
            if vias is not None:
                self._vias = [via, *vias[keep:]]

    def replace_top_via(self, via: Via | str) -> None:
        """Rewrite the topmost Via, e.g. to add `received`/`rport` (RFC 3261 §18.2.1, RFC 3581)."""
        self._pop_first_element("via")
        self._insert_before_first("via", header_line("Via", str(via)))
        self._set_top_via(via, keep=1)

    def stamp_top_via(self, received: str, rport: int | None = None) -> None:
        """Note where a request really came from in its top Via: add `received`, and fill an
        `rport` flag with `rport` when given (RFC 3261 §18.2.1, RFC 3581).

        The same Via as `replace_top_via(top_via.with_params(...))` gives, spliced into the
        line as received when that is the one-hop form a phone sends (`;rport` a flag, no
        `received`, no comma, quote or fold): the line is not rewritten from a `Via`, and the
        Via already parsed is kept with its new parameters.  Anything else takes that way.
        """
        via = self.top_via
        index = key_index(self._keys, "via")
        line = self._lines[index]
        spliced = _spliced_via(line, received, rport) if via.received is None else None
        if spliced is None:
            if rport is None:
                self.replace_top_via(via.with_params(received=received))
            else:
                self.replace_top_via(via.with_params(received=received, rport=str(rport)))
            return
        params = via.params
        if rport is not None:
            port = str(rport)
            params = tuple((name, port if name == "rport" else value) for name, value in params)
        self._lines[index] = spliced
        params = (*params, ("received", received))  # a new Via: parsed values are shared
        self._set_top_via(Via(via.transport, via.host, via.port, params, via.protocol), keep=1)

    def pop_via(self, sent: ReadableMessage | None = None) -> Via:
        """Remove and return the topmost Via (a proxy forwarding a response, §16.7 step 3).

        `sent`: the request this response answers, as it was sent.  A response copies
        the request's Vias (§8.2.6.2), so when its top Via line is the very line the
        request's top Via was written as, the `Via` that request holds is returned and
        the line is not parsed (a proxy relaying the answers to its own Via).
        """
        top = self._top_via
        if top is None and sent is not None:
            top = _same_top_via(self, sent)
        if top is None:
            top = self.top_via
        vias = self._vias
        self._pop_first_element("via")
        self._edited("via")
        if vias is not None:
            self._vias = vias[1:]
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
            self._lines[key_index(self._keys, "max-forwards")] = line
        except ValueError:
            self._keys.insert(0, "max-forwards")
            self._lines.insert(0, line)
        self._edited()
        self._max_forwards = value
        return value

    def pop_route(self) -> Address | None:
        """Remove and return the topmost Route value (loose routing, §16.4), or None."""
        routes = self.routes
        if not routes:
            return None
        self._pop_first_element("route")
        self._edited()
        self._routes = routes[1:]
        return routes[0]

    def add_record_route(self, address: Address | str) -> None:
        """Put a new topmost Record-Route value (a proxy staying on the dialog path, §16.6)."""
        self._insert_before_first("record-route", header_line("Record-Route", str(address)))
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
        if not key_count(self._keys, "content-length"):
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


def _same_top_via(message: ReadableMessage, sent: ReadableMessage) -> Via | None:
    """`sent`'s parsed top Via when `message`'s top Via line is byte for byte the same."""
    known = sent._top_via
    if known is None or not key_count(message._keys, "via"):
        return None
    line = message._lines[key_index(message._keys, "via")]
    return known if line == sent._lines[key_index(sent._keys, "via")] else None


def _spliced_via(line: bytes, received: str, rport: int | None) -> bytes | None:
    """`line` (one Via hop) with `;received=` appended and its `;rport` flag filled, or None
    when it is not that plain form: a comma (more hops), a quote, a fold, a trailing blank,
    or (with `rport`) anything but one `;rport` flag (any case, no blank inside)."""
    if (
        line.find(b",") >= 0
        or line.find(b'"') >= 0
        or line.find(b"\n") >= 0
        or line[-1:] in (b" ", b"\t")
    ):
        return None
    stamp = b";received=" + received.encode()
    if rport is None:
        return line + stamp
    lowered = line.lower()
    flag = lowered.find(b";rport")
    end = flag + 6
    if flag < 0 or lowered.find(b";rport", end) >= 0 or line[end : end + 1] not in (b"", b";"):
        return None
    return b"%s;rport=%d%s%s" % (line[:flag], rport, line[end:], stamp)
