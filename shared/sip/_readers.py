"""The readers: frame received bytes into a `Request` or `Response` (RFC 3261 §7, §18.3).

Parsing only frames the message: it splits the start line, cuts the header
block into one raw line per header field (folded continuation lines kept
verbatim), and slices the body by Content-Length.  It checks the framing, the
start line, the header names and Content-Length; header values are checked when
the model reads them or by `validate()` / `validate_for_proxy()`.  Hostile sizes are bounded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from shared.sip._fields import decode, value_of
from shared.sip._request_response import Request, Response
from shared.sip.errors import SipParseError
from shared.sip.headers import KEY_MEMO, TOKEN_BYTES, key_of_raw_name
from shared.sip.values import parse_content_length

MAX_MESSAGE_SIZE: Final = 65535
"""Largest message accepted: a UDP datagram's maximum, ample for TCP signalling too."""
MAX_HEADER_FIELDS: Final = 256
MAX_LINE_LENGTH: Final = 8192

_VERSION_SHAPE: Final = re.compile(rb"SIP/\d+\.\d+")

Scanned = tuple[bytes, list[str], list[bytes], int, int]
"""What the C scan frames: the start line, the keys, the lines, where the body starts and the
Content-Length (-1: none)."""


def _accelerator() -> Callable[[bytes, dict[bytes, str]], Scanned | None] | None:
    """The C scan (`_scan.c`) if this process loaded the compiled build, else None."""
    try:
        from shared.sip._scan import scan_head
    except ImportError:
        return None
    return scan_head


SCAN: Final = _accelerator()


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


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Frame and parse one SIP message; raise `SipParseError` when it is malformed.

    `stream=False` (UDP): the datagram is one message; without Content-Length
    the body is the rest of the datagram; octets after Content-Length are
    ignored (RFC 4475 §3.1.1.8).  `stream=True` (TCP/TLS): Content-Length is
    mandatory (RFC 3261 §18.3) and `data` must hold the whole message.
    Leading CRLFs (keep-alives) are skipped.  Only framing, the start line,
    the header names and Content-Length are checked here; header values are
    checked when read or by `validate()`.  A plain message is framed by the C
    scan when the compiled build has it (`_scan.c`), any other by `_frame`.
    """
    return _read(data, stream, limits=True)


def read_again(data: bytes) -> Request | Response:
    """A message this process read or wrote before, from its bytes (`to_bytes`), as
    `parse_message` reads a datagram but without the limits on what comes in: the edge's
    own edits (a stamped Via, an added Via and Record-Route) may take a message that was
    just within them past them.  What else the reader checks, those bytes passed."""
    return _read(data, False, limits=False)


def _read(data: bytes, stream: bool, *, limits: bool) -> Request | Response:
    scanned = None if SCAN is None else SCAN(data, KEY_MEMO)
    if scanned is None:
        return _frame(data, stream, limits)
    start, keys, lines, body_start, declared = scanned
    return _framed(data, stream, True, start, keys, lines, body_start, declared)


def _frame(data: bytes, stream: bool, limits: bool) -> Request | Response:
    """The readers' own framing: every message the C scan leaves, and all of them without it.
    `limits`: the size, field count and line length limits on what comes in."""
    if limits and len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large", 513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    found = find_head_end(data)
    if found is None:
        if stream:
            raise SipParseError("incomplete message: no empty line after the headers")
        head = data.rstrip(b"\r\n")
        body_start = len(data)
    else:
        head, body_start = data[: found[0]], found[1]
    crlf = crlf_lines(head)
    raw_lines = head.split(b"\r\n") if crlf else _bare_lf_lines(head)
    if _has_bare_line_break(head, crlf, len(raw_lines) - 1):
        raise SipParseError("bare CR or LF inside a header field")
    if limits and len(raw_lines) > MAX_HEADER_FIELDS:
        raise SipParseError("too many header fields", 400)
    if not raw_lines[0]:
        raise SipParseError("empty start line")
    if limits and len(head) > MAX_LINE_LENGTH and max(map(len, raw_lines)) > MAX_LINE_LENGTH:
        raise SipParseError("header line too long")
    lines = raw_lines[1:]
    keys = _keys_of(lines)
    if keys is None:  # a fold, a name not seen before, or a malformed line
        lines = _join_folded(lines)
        keys = [_key_of_line(line) for line in lines]
    cl_count = keys.count("content-length")
    if cl_count > 1:
        raise SipParseError("more than one Content-Length header")
    declared = -1
    if cl_count:
        value = lines[keys.index("content-length")].partition(b":")[2].strip()
        if not value.isdigit() or len(value) > 9:
            parse_content_length(value_of(lines[keys.index("content-length")]))  # the error
        declared = int(value)
    return _framed(data, stream, crlf, raw_lines[0], keys, lines, body_start, declared)


def _framed(  # noqa: PLR0917 — the framing's parts, from either scan
    data: bytes,
    stream: bool,
    crlf: bool,
    start: bytes,
    keys: list[str],
    lines: list[bytes],
    body_start: int,
    declared: int,
) -> Request | Response:
    """The message from its framed head: its body by `declared` (-1: no Content-Length)."""
    if declared < 0:
        if stream:
            raise SipParseError("missing Content-Length on a stream transport")
        return _start_line(start, keys, lines, data[body_start:], None)
    end = body_start + declared
    if end <= len(data):
        wire = data if end == len(data) else data[:end]
        return _start_line(start, keys, lines, data[body_start:end], wire)
    if stream or crlf:
        raise SipParseError("Content-Length larger than the message")
    # Bare-LF text is hand-written, not wire format, and its Content-Length
    # was typically counted with CRLF (RFC 5118's archive): trust the datagram.
    body = data[body_start:]
    lines[keys.index("content-length")] = b"Content-Length: %d" % len(body)
    return _start_line(start, keys, lines, body, None)


def crlf_lines(head: bytes) -> bool:
    """Whether the head's lines end in CRLF (else bare LF), judged by its first line break.

    A head of one line is not (its lines are the same either way, and a CR in it is a bare
    one either way).  `partition`, not `find`: `bytes.find` parses its arguments from a
    tuple (CPython 3.11).  No slice of an empty first line: compiled by mypyc, a bytes slice
    whose start passes its end raises SystemError instead of giving ``b""``.
    """
    first, newline, _ = head.partition(b"\n")
    return bool(newline) and bool(first) and first[-1:] == b"\r"


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


def _bare_lf_lines(head: bytes) -> list[bytes]:
    """The lines of a bare-LF head; one ending in CRLF all the same (the lenient form allows
    it) loses its CR, which an edited message would otherwise write back as `CR CR LF`."""
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


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


def _keys_of(lines: list[bytes]) -> list[str] | None:
    """The header key of every field line, when each one's name is in the memo; else None.

    One `partition` per line: `bytes.find` and `bytes.index` parse their arguments
    from a tuple (~1,600 instructions a call in CPython 3.11, against ~800).  A fold's
    continuation line starts with a blank, which no name in the memo does, so a
    message with folds takes the slow path too (no search of the head for them); a
    line without a colon never hits the memo.
    """
    keys = []
    memo = KEY_MEMO
    for line in lines:
        name, colon, _ = line.partition(b":")
        key = memo.get(name) if colon else None
        if key is None:
            return None
        keys.append(key)
    return keys


def _key_of_line(line: bytes) -> str:
    """The checked slow path of `_keys_of`: its memo learns the name (without its colon)."""
    name, colon, _ = line.partition(b":")
    if not colon or not name:
        raise SipParseError("malformed header line (no name or colon)")
    return key_of_raw_name(name)


def _start_line(
    start: bytes, keys: list[str], lines: list[bytes], body: bytes, wire: bytes | None
) -> Request | Response:
    if start[:4] == b"SIP/":  # a slice: `startswith` parses its arguments from a tuple
        parts = start.split(b" ", 2)
        if len(parts) < 2:
            raise SipParseError("malformed status line")
        _check_version(parts[0])
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or code[:1] == b"0":
            raise SipParseError("malformed status code")
        reason = decode(parts[2], "reason phrase") if len(parts) == 3 else ""
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
        method.decode("ascii"), decode(uri, "Request-URI"),
        keys=keys, lines=lines, body=body, wire=wire, start=start,
    )  # the fields and the parts of the message on two lines  # fmt: skip


def _check_version(version: bytes) -> None:
    if version == b"SIP/2.0":
        return
    if _VERSION_SHAPE.fullmatch(version):
        raise SipParseError(f"{version.decode()} is not supported", 505)
    raise SipParseError("malformed SIP version")
