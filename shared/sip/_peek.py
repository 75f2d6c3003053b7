"""Peek at unparsed bytes: one header's value, before anyone parses the message.

For deciding where a message goes (which edge worker owns its call) at the
cost of a ``bytes.find`` or two, not a parse.
"""

from __future__ import annotations

import re
from typing import Final

from shared.sip._readers import find_head_end
from shared.sip.errors import SipParseError
from shared.sip.headers import COMPACT_FORMS, canonical_name, key_of_raw_name


def peek_header(data: bytes, key: str) -> bytes | None:
    """The first raw value of header `key` (see `headers.header_key`) of unparsed bytes.

    For deciding where a message goes before anyone parses it (which edge worker
    owns its call). The usual and the compact spelling are found with a
    ``bytes.find`` each, the earlier one wins; other cases and space before the
    colon take a scan of the header lines with the parser's own name rules. The
    value is stripped, not unfolded or split.
    """
    found = -1
    width = 0
    for needle in _needles(key):
        at = data.find(needle)
        if at >= 0 and (found < 0 or at < found):
            found, width = at, len(needle)
    blank_before = found >= 0 and (
        data.find(b"\n\n", 0, found + 1) >= 0 or data.find(b"\n\r\n", 0, found + 1) >= 0
    )
    if found >= 0 and not blank_before:
        start = found + width
        stop = data.find(b"\n", start)
        return data[start : len(data) if stop < 0 else stop].strip()
    head = find_head_end(data)
    for line in data[: len(data) if head is None else head[0]].split(b"\n")[1:]:
        colon = line.find(b":")
        try:
            if colon > 0 and key_of_raw_name(line[: colon + 1]) == key:
                return line[colon + 1 :].strip()
        except SipParseError:
            continue
    return None


_CALL_ID_OR_BLANK: Final = re.compile(rb"\n(?:\n|\r\n|Call-ID: (.*))")
"""The first line break that starts a blank line or a ``Call-ID: `` line (the group: its
value up to the line feed, as `peek_header` reads it): a Call-ID found before any blank line
is in the header block.  Each alternative starts with a literal, which the engine tests
before entering it, and ``.`` runs faster than a class: a fifth cheaper than ``\r?(\n)``
and ``[^\r\n]*``."""


def peek_call_id(data: bytes) -> bytes | None:
    """`peek_header` (``call-id``) with one regular-expression search rather than six
    ``find``s, for a message that spells it as SIP stacks send it (``Call-ID: `` at a line's
    start, before any blank line), as the edge's capture and worker hand-over do for every
    message; any other spelling takes `peek_header`.  Why a search: compiled, each ``find``
    (and ``in``, which first tries the needle as an integer and formats the error) is a
    method call costing more than its scan, and the search reads the header block once,
    stopping at the Call-ID, where the ``find``s read the whole message, body included."""
    found = _CALL_ID_OR_BLANK.search(data)
    if found is not None:
        value = found[1]
        if value is not None:
            return value.strip()
    return peek_header(data, "call-id")


def _needles(key: str) -> tuple[bytes, ...]:
    """``b"\\nName:"`` in the usual and the compact spelling of header `key`."""
    needles = _PEEK_NEEDLES.get(key)
    if needles is None:
        names = [canonical_name(key), *(c for c, k in COMPACT_FORMS.items() if k == key)]
        needles = _PEEK_NEEDLES[key] = tuple(b"\n" + name.encode() + b":" for name in names)
    return needles


_PEEK_NEEDLES: Final[dict[str, tuple[bytes, ...]]] = {}
