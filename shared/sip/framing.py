"""Cut a SIP byte stream (TCP, TLS) into whole messages, sans-IO.

A stream has no datagram boundaries, so a message ends where its headers end
plus Content-Length body bytes; RFC 3261 §18.3 makes Content-Length mandatory
here and a stream without it cannot be resynchronised, so its absence is fatal
for the connection.  Between messages a peer may send CRLF keep-alives
(RFC 5626 §3.5.1): a double CRLF is a ping the adapter must answer with a
single CRLF, a lone CRLF is the pong to our own ping.  A lone CRLF ending a
segment may also be the first half of a ping whose rest comes next: after
`expect_pong` (we sent a ping) it is taken as the pong, whole, so a phone's
pongs to our pings are each told, however many come one per segment.

Hostile input must cost little: the header block is bounded, a body larger than
the limit is refused as soon as its Content-Length is read (before buffering
it), and each byte is scanned once however the stream is segmented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_HEADER_SIZE: Final = 16 * 1024
DEFAULT_MAX_BODY_SIZE: Final = 64 * 1024

_CRLF: Final = b"\r\n"
_PING: Final = b"\r\n\r\n"


class KeepAlive:
    """A CRLF keep-alive seen between messages; `PING` and `PONG` are the only instances."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PING: Final = KeepAlive("PING")
"""A double CRLF: the adapter must answer with a single CRLF (RFC 5626 §3.5.1)."""

PONG: Final = KeepAlive("PONG")
"""A lone CRLF: the peer's answer to our ping (or leading noise, RFC 3261 §7.5)."""


@dataclass(frozen=True, slots=True)
class FramingError:
    """The stream cannot be framed any further; the adapter should close the connection."""

    reason: str


FrameEvent = bytes | KeepAlive | FramingError
"""What `StreamFramer.feed` yields: a whole message, a keep-alive, or a fatal error (last)."""


class StreamFramer:
    """Incremental framer for one connection.

    `feed` returns the events completed by the new bytes.  A `FramingError` is
    always the last event; after it the framer ignores further input, because
    a stream that lost its framing cannot be trusted again.
    """

    __slots__ = (
        "_body_end",
        "_buffer",
        "_expecting_pong",
        "_failed",
        "_max_body_size",
        "_max_header_size",
        "_pending_crlf",
        "_scanned",
    )

    def __init__(
        self,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self._max_header_size = max_header_size
        self._max_body_size = max_body_size
        self._buffer = bytearray()
        # Offset up to which the current message's header block is known not
        # to contain its end, so that a slow sender costs one scan per byte.
        self._scanned = 0
        # Total length of the current message once its headers are parsed.
        self._body_end = -1
        # A lone CRLF ended the previous feed: a CRLF at the start of the next
        # one completes a ping that arrived split across two segments.
        self._pending_crlf = False
        # We sent a ping: the next lone CRLF is its pong, not half of a ping.
        self._expecting_pong = False
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message (for limits and metrics)."""
        return len(self._buffer)

    def expect_pong(self) -> None:
        """We sent a CRLF ping on this stream: the next lone CRLF is its pong (never the
        first half of a ping split across segments, whose second half would be a `PING`)."""
        self._expecting_pong = True

    def feed(self, data: bytes) -> list[FrameEvent]:
        if self._failed or not data:
            return []
        events: list[FrameEvent] = []
        # With nothing buffered (the common case) frame `data` in place, so a
        # segment holding whole messages is never copied into the buffer.
        stream: bytes | bytearray
        if self._buffer:
            self._buffer += data
            stream = self._buffer
        else:
            stream = data
        start = 0
        end = len(stream)
        while start < end:
            if self._body_end < 0:
                if stream[start] == 0x0D:  # CR at a boundary: a keep-alive
                    after = self._keep_alive(stream, start, end, events)
                    if after < 0:
                        return self._fail(events, "stray CR between messages")
                    if after == start:
                        break
                    start = after
                    continue
                self._pending_crlf = False
                header_end = self._find_header_end(stream, start, end)
                if header_end < 0 or header_end - start > self._max_header_size:
                    if end - start > self._max_header_size:
                        return self._fail(events, "header block exceeds the size limit")
                    break
                length = _content_length(stream[start:header_end].lower())
                if isinstance(length, str):
                    return self._fail(events, length)
                if length > self._max_body_size:
                    return self._fail(events, f"Content-Length {length} exceeds the body limit")
                self._body_end = header_end - start + length
            message_end = start + self._body_end
            if message_end > end:
                break
            events.append(bytes(stream[start:message_end]))
            start = message_end
            self._body_end = -1
            self._scanned = 0
        if stream is self._buffer:
            del self._buffer[:start]
        else:
            self._buffer += data[start:]
        return events

    def _keep_alive(
        self, stream: bytes | bytearray, start: int, end: int, events: list[FrameEvent]
    ) -> int:
        """Consume one keep-alive at `start`.

        Returns the offset after it, `start` itself when more bytes are needed
        to tell a ping from a pong, or -1 for a CR that starts neither.
        """
        if stream.startswith(_CRLF, start):
            if self._pending_crlf or stream.startswith(_PING, start):
                # Either a whole ping, or the second half of one whose first
                # CRLF ended the previous segment (already reported as a pong).
                events.append(PING)
                after = start + (2 if self._pending_crlf else 4)
                self._pending_crlf = False
                return after
            if end - start == 3:
                return start  # "\r\n\r": a ping may still be arriving
            events.append(PONG)
            self._pending_crlf = start + 2 == end and not self._expecting_pong
            self._expecting_pong = False
            return start + 2
        return start if end - start == 1 else -1

    def _find_header_end(self, stream: bytes | bytearray, start: int, end: int) -> int:
        """Offset just past the blank line ending the headers at `start`, or -1."""
        found = stream.find(_PING, start + max(0, self._scanned - 3), end)
        if found >= 0:
            return found + 4
        self._scanned = end - start
        return -1

    def _fail(self, events: list[FrameEvent], reason: str) -> list[FrameEvent]:
        self._failed = True
        self._buffer.clear()
        events.append(FramingError(reason))
        return events


def _content_length(lowered: bytes | bytearray) -> int | str:
    """Content-Length from a lower-cased header block, or the reason it cannot be used.

    Only the one header the framer needs is read, so the message layer can
    still parse lazily later; duplicates that disagree are refused because
    the stream boundary would depend on which one a peer believes.
    """
    value: int | None = None
    for name in (b"\ncontent-length", b"\nl"):
        position = lowered.find(name)
        while position >= 0:
            cursor = position + len(name)
            while lowered[cursor : cursor + 1] in (b" ", b"\t"):
                cursor += 1
            if lowered[cursor : cursor + 1] == b":":
                line_end = lowered.find(b"\n", cursor)
                text = bytes(lowered[cursor + 1 : line_end].strip())
                if not text.isdigit() or len(text) > 10:
                    return f"bad Content-Length {text.decode('latin-1')!r}"
                length = int(text)
                if value is not None and value != length:
                    return "conflicting Content-Length headers"
                value = length
            position = lowered.find(name, cursor)
    if value is None:
        return "missing Content-Length on a stream transport"
    return value
