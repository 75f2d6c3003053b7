"""One raw header field line: read its value, or write a new one (RFC 3261 §7.3.1).

The message model keeps each header field as the bytes received, so reading a
value (unfolding it, decoding UTF-8) and writing one (refusing a line break, a
header injection) happen at this one place, for the readers, the model and the
writers alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from shared.sip.errors import SipParseError
from shared.sip.headers import header_key

_FOLD: Final = re.compile(r"\r?\n[ \t]+")


def decode(raw: bytes, what: str) -> str:
    """`raw` as UTF-8 text; `what` names it in the `SipParseError` when it is not."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise SipParseError(f"{what} is not valid UTF-8") from None


def read_value(line: bytes) -> str:
    """The value of a raw field line: folds unfolded, whitespace stripped, UTF-8 decoded.

    `value_of` is this, or in the compiled build the same in C (`_scan.field_value`,
    several times cheaper; `tests/shared/sip/test_scan.py` holds the two to one answer).

    Decoded first, then unfolded as text: `b"\\n" in value` costs ~2,000 instructions
    (CPython's `bytes.__contains__` tries its operand as an integer first, raising and
    clearing a TypeError), a `str` test a plain search, native once compiled.  Folds
    and whitespace are ASCII, so the result is the same, and the bytes are valid UTF-8
    before unfolding exactly when they are after.  `decode`'s work done in place: a
    Python call per header value read (~60 per call through the proxy) costs more than
    the decode itself.  `partition`, not `index` and a slice: CPython's `bytes.index`
    parses its arguments from a tuple, about twice the instructions.
    """
    try:
        text = line.partition(b":")[2].decode()
    except UnicodeDecodeError:
        raise SipParseError("header value is not valid UTF-8") from None
    if "\n" in text:
        text = _FOLD.sub(" ", text)
    return text.strip(" \t\r\n")


def _reader() -> Callable[[bytes], str]:
    """The C reader of a value (`_scan.c`) if this process loaded the compiled build."""
    try:
        from shared.sip._scan import field_value
    except ImportError:
        return read_value
    return field_value


value_of: Final = _reader()
"""Read a raw field line's value (`read_value`, or the same in C)."""


def header_line(name: str, value: str) -> bytes:
    """A new raw field line; a line break in `value` would inject a header, so it is refused."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} value contains a line break")
    return f"{name}: {value}".encode()


def header_lists(headers: Iterable[tuple[str, str]]) -> tuple[list[str], list[bytes]]:
    """(name, value) pairs as the model's parallel key and line lists, to build a message."""
    keys = []
    lines = []
    for name, value in headers:
        keys.append(header_key(name))
        lines.append(header_line(name, value))
    return keys, lines
