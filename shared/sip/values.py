"""Small scalar header values: CSeq, Max-Forwards, Expires, Content-Length, Call-ID, Date, tokens.

Range limits follow RFC 3261 (CSeq < 2**31, Max-Forwards ≤ 255, delta-seconds
< 2**32); an out-of-range value is a 400, as RFC 4475 §3.1.2.4 expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Final

from shared.sip.errors import SipParseError


def _accelerator() -> ModuleType | None:
    """The C value readers (`_values.c`) if this process loaded the compiled build."""
    try:
        from shared.sip import _values
    except ImportError:
        return None
    return _values


_C_VALUES: Final = _accelerator()
CSEQ_PARTS: Final[Callable[[str], tuple[int, str] | None] | None] = (
    None if _C_VALUES is None else _C_VALUES.cseq_parts
)
"""The C reader of a plain CSeq (`_values.cseq_parts`) in the compiled build: it answers as
`_parse_cseq_in_python` or not at all (None), and saves ~1,200 instructions of each CSeq's
~2,000 (a split, a digit check and an int, a new string)."""

_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_WORD: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+")
_CALL_ID: Final = re.compile(rf"{_WORD.pattern}(?:@{_WORD.pattern})?")
_DATE: Final = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" (\d{4}) (\d\d):(\d\d):(\d\d) GMT"
)
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_METHODS: Final = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)
"""The methods of the RFCs, tokens all: a CSeq naming one needs no pattern match (a regex
match and its match object, ~1,100 instructions; seven CSeqs a call)."""
_MAX_CSEQ: Final = 2**31 - 1
_MAX_DELTA: Final = 2**32 - 1


@dataclass(slots=True, init=False, unsafe_hash=True)
class CSeq:
    seq: Final[int]
    method: Final[str]

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _digits(text: str, what: str, limit: int) -> int:
    """A non-negative decimal within `limit`; checked by length first so huge input is cheap.

    Up to nine digits (every CSeq, Max-Forwards and Content-Length seen in practice)
    `int` is exact and cheap: the value is compared with `limit` as it is, with no
    leading zeros stripped and no `str(limit)` made, one `int` instead of two.
    """
    if len(text) < 10 and text.isdigit() and text.isascii():
        value = int(text)
        if value > limit:
            raise SipParseError(f"{what} out of range")
        return value
    if not text.isascii() or not text.isdigit():
        raise SipParseError(f"malformed {what}")
    significant = text.lstrip("0")
    if len(significant) > len(str(limit)) or int(text) > limit:
        raise SipParseError(f"{what} out of range")
    return int(text)


def parse_cseq(text: str) -> CSeq:
    """A CSeq: read in C when the compiled build has it and the text is plain (`_values.c`:
    one walk, the RFCs' methods interned), else by `_parse_cseq_in_python`, which decides
    every other text and its error."""
    if CSEQ_PARTS is not None:
        parts = CSEQ_PARTS(text)
        if parts is not None:
            return CSeq(parts[0], parts[1])
    return _parse_cseq_in_python(text)


def _parse_cseq_in_python(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or (parts[1] not in _METHODS and not _TOKEN.fullmatch(parts[1])):
        raise SipParseError("malformed CSeq")
    return CSeq(_digits(parts[0], "CSeq sequence number", _MAX_CSEQ), parts[1])


def parse_max_forwards(text: str) -> int:
    return _digits(text, "Max-Forwards", 255)


def parse_delta_seconds(text: str, what: str) -> int:
    """Expires / Min-Expires style value; `what` names the header in the error."""
    return _digits(text, what, _MAX_DELTA)


def parse_content_length(text: str) -> int:
    return _digits(text, "Content-Length", 2**31 - 1)


def _is_call_id(text: str) -> bool:
    """Whether `text` is a Call-ID (RFC 3261 §25.1: a word, or word@word)."""
    return _CALL_ID.fullmatch(text) is not None


IS_CALL_ID: Final[Callable[[str], bool]] = (
    _is_call_id if _C_VALUES is None else _C_VALUES.is_call_id
)
"""The C check (`_values.is_call_id`) in the compiled build, else `_is_call_id`: the two
answer alike (tests/shared/sip/test_values_in_c.py)."""


def parse_call_id(text: str) -> str:
    if not IS_CALL_ID(text):
        raise SipParseError("malformed Call-ID")
    return text


def parse_date(text: str) -> datetime:
    """An RFC 1123 date, which SIP requires to be in GMT (RFC 3261 §20.17)."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise SipParseError("malformed Date (must be RFC 1123 in GMT)")
    _, day, month, year, hour, minute, second = match.groups()
    try:
        return datetime(
            int(year),
            _MONTHS.index(month) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:
        raise SipParseError("malformed Date (no such day or time)") from None


def parse_token_list(text: str) -> list[str]:
    """Require / Proxy-Require / Supported / Allow: comma-separated tokens."""
    tokens = [part.strip() for part in text.split(",")]
    if text.strip() == "":
        return []
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            raise SipParseError("malformed option tag list")
    return tokens
