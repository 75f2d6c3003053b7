"""Building responses: from a parsed request, or as the error answer to bytes that failed to parse.

`error_response` works from raw bytes on purpose: the message it answers may
be too broken to parse, yet RFC 3261 §8.1.3.1 / RFC 4475 want a 400 (or 505,
420, 483, ...) whenever the Via, From, To, Call-ID and CSeq lines can be found.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shared.sip.branch import new_tag
from shared.sip.errors import SipError, SipParseError
from shared.sip.headers import DIALOG_KEYS, key_of_raw_name
from shared.sip.message import Message, Request, Response, crlf_lines, find_head_end
from shared.sip.via import parse_via

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def reason_phrase(status: int) -> str:
    """The RFC reason phrase for `status`, or the class's generic one for unknown codes."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return REASON_PHRASES.get(status // 100 * 100, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `request` (RFC 3261 §8.2.6): Vias, From, To, Call-ID and CSeq copied.

    `to_tag` is added to To unless To already has a tag (a UAS must add one
    to every non-100 response outside a dialog).  A 100 also copies Timestamp.
    Extra `headers` follow, then Content-Length (added on serialisation).
    """
    # The fields are copied as raw lines (compact names and folds stay as received):
    # no decoding and re-encoding, which matters for the 100 Trying sent per INVITE.
    keys: list[str] = []
    lines: list[bytes] = []
    for key in (*DIALOG_KEYS, "timestamp") if status == 100 else DIALOG_KEYS:
        for line in request.field_lines(key):
            keys.append(key)
            lines.append(line)
    response = Response(status, reason or reason_phrase(status), keys=keys, lines=lines, body=body)
    if to_tag is not None and request.to_tag is None:
        for to in response.headers("to"):
            response.set_header("To", f"{to};tag={to_tag}")
    for name, value in headers:
        response.add_header(name, value)
    return response


def error_response(message: bytes | Message, error: SipError) -> bytes | None:
    """The wire bytes answering a rejected request, or None when no answer can be sent.

    None when `message` is a response (responses are never answered), when
    no usable top Via can be found (RFC 4475: drop it).  Whatever of From,
    To, Call-ID and CSeq can be found is copied, so a request missing some of
    them (RFC 4475 §3.3.1) still gets its 400.  The reason phrase names the problem.
    """
    if isinstance(message, Response):
        return None
    data = message.to_bytes() if isinstance(message, Message) else message
    found = find_head_end(data)
    head = data[: found[0]] if found else data
    lines = head.split(b"\r\n") if crlf_lines(head) else head.split(b"\n")
    # A CR or LF inside a line (which the parser refuses) must not go back out.
    lines = [line.rstrip(b"\r").replace(b"\r", b" ").replace(b"\n", b" ") for line in lines]
    if lines[0].startswith(b"SIP/"):
        return None
    copied = _dialog_lines(lines[1:])
    if copied is None:
        return None
    phrase = reason_phrase(error.status)
    if error.reason != phrase:
        phrase = f"{phrase} ({error.reason})"
    phrase = "".join(ch if ch.isprintable() else " " for ch in phrase)
    out = [f"SIP/2.0 {error.status} {phrase}".encode(), *copied]
    out += [f"{name}: {value}".encode() for name, value in error.headers]
    out += [b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def _dialog_lines(lines: list[bytes]) -> list[bytes] | None:
    """All Via lines and the first From/To/Call-ID/CSeq (unfolded), a To tag added.

    None if there is no usable top Via to send the answer to: its sent-protocol and
    sent-by must parse; its parameters may be broken (RFC 4475 §3.1.2.1).
    """
    copied: list[bytes] = []
    keys: list[str] = []
    copying = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if copying:
                copied[-1] += b" " + line.strip()
            continue
        colon = line.find(b":")
        try:
            key = key_of_raw_name(line[: colon + 1]) if colon > 0 else ""
        except SipParseError:
            key = ""
        copying = key in DIALOG_KEYS and (key == "via" or key not in keys)
        if copying:
            copied.append(line)
            keys.append(key)
    if "via" not in keys:
        return None
    top = copied[keys.index("via")]
    try:
        parse_via(top[top.index(b":") + 1 :].split(b",")[0].split(b";")[0].decode())
    except (SipParseError, UnicodeDecodeError):
        return None
    if "to" in keys:
        to = keys.index("to")
        if b";tag=" not in copied[to].lower().replace(b" ", b""):
            copied[to] += b";tag=" + new_tag().encode()
    return copied
