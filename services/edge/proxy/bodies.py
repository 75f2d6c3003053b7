"""The SDP in a message body, and the body with it replaced: rtpengine rewrites SDP alone.

A body is SDP when its Content-Type is `application/sdp`, or absent (most
peers send SDP without one).  A `multipart/mixed` body (RFC 5621: SDP beside
an ISUP part, a PIDF-LO location, a resource list) carries it as one of its
parts: only that part goes to rtpengine and comes back, the boundary, the
other parts and their order stay byte for byte as received.  The first
`application/sdp` part is the session's (RFC 3261 allows one offer per
message); nested multiparts are not looked into, and a body whose parts do
not parse is not SDP: it goes unrelayed rather than mangled.
"""

from __future__ import annotations

from typing import Final

SDP: Final = "application/sdp"
MULTIPART: Final = "multipart/mixed"


def sdp_of(body: bytes, content_type: str | None) -> bytes | None:
    """The SDP that `body` carries, or None when it carries none."""
    if not body:
        return None
    kind = _media_type(content_type)
    if kind is None or kind == SDP:
        return body
    if kind != MULTIPART or content_type is None:
        return None
    span = _sdp_part(body, content_type)
    return None if span is None else body[span[0] : span[1]]


def with_sdp(body: bytes, content_type: str | None, sdp: bytes) -> bytes:
    """`body` with the SDP it carries (`sdp_of`) replaced by `sdp`."""
    if content_type is not None and _media_type(content_type) == MULTIPART:
        span = _sdp_part(body, content_type)
        if span is not None:
            return body[: span[0]] + sdp + body[span[1] :]
    return sdp


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _boundary(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value.encode("latin-1", "replace") or None
    return None


def _sdp_part(body: bytes, content_type: str) -> tuple[int, int] | None:
    """Where the content of the first `application/sdp` part starts and ends (RFC 2046 §5.1.1:
    each delimiter follows a CRLF, the first may open the body; headers end at a blank line)."""
    boundary = _boundary(content_type)
    if boundary is None:
        return None
    delimiter = b"--" + boundary
    if body.startswith(delimiter):
        position = 0
    else:
        position = body.find(b"\r\n" + delimiter)
        if position < 0:
            return None
        position += 2
    while True:
        after = position + len(delimiter)
        if body[after : after + 2] == b"--":
            return None  # the close delimiter: no SDP part
        line_end = body.find(b"\r\n", after)
        close = -1 if line_end < 0 else body.find(b"\r\n" + delimiter, line_end)
        if close < 0:
            return None
        header_end = body.find(b"\r\n\r\n", line_end, close + 2)
        start = header_end + 4
        # header_end == line_end: a part without headers, text/plain (and no slice running
        # backwards: compiled by mypyc, bytes[i:j] with j < i raises instead of giving b"").
        if (
            header_end > line_end
            and start <= close
            and _is_sdp_part(body[line_end + 2 : header_end])
        ):
            return start, close
        position = close + 2


def _is_sdp_part(headers: bytes) -> bool:
    """A part's headers name `application/sdp` (RFC 2046: a part without one is text/plain)."""
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-type", b"c"):
            return _media_type(value.decode("latin-1")) == SDP
    return False
