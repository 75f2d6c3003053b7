"""SIP messages: parse once, read lazily, forward by editing the received bytes (RFC 3261 §7).

Parsing only frames the message: it splits the start line, cuts the header
block into one raw line per header field (folded continuation lines kept
verbatim), and slices the body by Content-Length.  A header value is decoded
and parsed into structure the first time someone reads it, and the result is
kept in a typed slot; the tags and the top Via's branch are read from their
header parameters alone.  Edits (prepend a Via, decrement Max-Forwards, pop a Route, ...)
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
up front, and `Request.validate_for_proxy()` what a proxy uses (RFC 3261 §16.3).

This module is the interface; the work is split the way it runs, each part in a
private module: `_readers` (bytes to a message), `_peek` (one header of
unparsed bytes), `_model` (the lines and reading them), `_writers` (edits and
serialisation), `_request_response` (the two kinds of start line) and
`_fields` (one raw header line).  Import from here, not from those.
"""

from shared.sip._peek import peek_call_id, peek_header
from shared.sip._readers import (
    MAX_HEADER_FIELDS,
    MAX_LINE_LENGTH,
    MAX_MESSAGE_SIZE,
    crlf_lines,
    find_head_end,
    parse_message,
    read_again,
)
from shared.sip._request_response import SIP_VERSION, Request, Response
from shared.sip._writers import DEFAULT_MAX_FORWARDS, Message

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "MAX_HEADER_FIELDS",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "SIP_VERSION",
    "Message",
    "Request",
    "Response",
    "crlf_lines",
    "find_head_end",
    "parse_message",
    "peek_call_id",
    "peek_header",
    "read_again",
]
