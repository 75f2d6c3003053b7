"""Header names: compact forms, canonical spelling, and comma splitting (RFC 3261 §7.3).

Names are looked up by a *key*: the lower-cased long form ("v" and "VIA" both
give "via").  The raw-name → key map is memoised because the same few dozen
names arrive in every packet; the memo is bounded so hostile names cannot grow it.
"""

from __future__ import annotations

import sys
from typing import Final

from shared.sip.errors import SipParseError

COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_SPECIAL_SPELLING: Final = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

LIST_HEADERS: Final = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "content-language",
        "in-reply-to",
        "path",
        "service-route",
        "alert-info",
        "call-info",
        "error-info",
        "warning",
        "reason",
    }
)
"""Headers whose comma-separated values are separate list elements (§7.3.1).

Authorization-family headers are absent on purpose: their commas separate
parameters of one value, and each occurrence is a separate value.
"""

SINGLE_HEADERS: Final = (
    "to",
    "from",
    "call-id",
    "cseq",
    "max-forwards",
    "content-length",
    "content-type",
    "expires",
)
"""Headers that must occur at most once (RFC 4475 §3.3.8, §3.3.9), in the order they are checked."""
_SINGLE_KEYS: Final = frozenset(SINGLE_HEADERS)

TOKEN_TEXT: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
"""The characters of an RFC 3261 token (§25.1)."""
TOKEN_CHARS: Final = frozenset(TOKEN_TEXT)
TOKEN_BYTES: Final = frozenset(TOKEN_TEXT.encode())
DIALOG_KEYS: Final = ("via", "from", "to", "call-id", "cseq")
"""The headers every request needs (§8.1.1) and every response copies (§8.2.6.2)."""
KEY_MEMO: Final[dict[bytes, str]] = {}
"""Raw header name as received, with its colon or (as the parser looks it up) without → key."""
_MEMO_LIMIT: Final = 512
_KEY_OF_NAME: Final[dict[str, str]] = {}
"""Caller-given name → key: callers name the same few headers on every message."""


def header_key(name: str) -> str:
    """The lookup key of a header name given by a caller (long or compact, any case).

    Interned (the memo's, so a bounded number: an interned string lives for good from
    Python 3.12): a message's keys are then the very objects of the literals compiled code
    looks them up by (mypyc interns its string literals), so the look-ups of `_model`
    (``list.index``, ``in``) find them by identity before comparing any text: 25,000
    instructions a call fewer compiled (callgrind, `bench.proxy.core_calls`)."""
    key = _KEY_OF_NAME.get(name)
    if key is not None:
        return key
    lowered = name.strip().lower()
    key = COMPACT_FORMS.get(lowered, lowered)
    if len(_KEY_OF_NAME) < _MEMO_LIMIT:  # interned only here: so no more than the memo holds
        key = _KEY_OF_NAME[name] = sys.intern(key)
    return key


def key_of_raw_name(raw: bytes) -> str:
    """The key of a header name as it came off the wire, colon included or not (`b"Via :"`).

    Raises `SipParseError` if the name is not a token.
    """
    key = KEY_MEMO.get(raw)
    if key is not None:
        return key
    name = raw.removesuffix(b":").rstrip(b" \t")
    if not name or not TOKEN_BYTES.issuperset(name):
        raise SipParseError("malformed header name")
    key = header_key(name.decode("ascii"))
    if len(KEY_MEMO) < _MEMO_LIMIT:
        KEY_MEMO[raw] = key
    return key


def canonical_name(key: str) -> str:
    """The conventional spelling of a header key, used when this layer writes a header."""
    special = _SPECIAL_SPELLING.get(key)
    if special is not None:
        return special
    return "-".join(part.capitalize() for part in key.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value on the commas that separate list elements.

    Commas inside quoted strings and inside `<...>` belong to the element.
    Elements are stripped; empty ones are kept so callers can reject them.
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",")]
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    if in_quotes:
        raise SipParseError("unterminated quoted string")
    parts.append(value[start:].strip())
    return parts


def first_repeated_single(keys: list[str], present: set[str]) -> str | None:
    """The first of `SINGLE_HEADERS` that a message's `keys` (`present`: their set) repeat.

    Looked for only when some header repeats (Vias, Routes): a count per single
    header, each a scan of the keys, was ~100 string comparisons per message checked.
    """
    if len(present) == len(keys):
        return None
    singles = [key for key in keys if key in _SINGLE_KEYS]
    if len(singles) == len(set(singles)):
        return None
    return next(key for key in SINGLE_HEADERS if singles.count(key) > 1)
