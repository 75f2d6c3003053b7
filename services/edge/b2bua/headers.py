"""What crosses from one leg to the other: an explicit allow-list of header fields.

A B2BUA hides each side's topology from the other, so nothing is copied by default:
Via, Contact, Record-Route, Route, Call-ID, the tags, CSeq and Max-Forwards are each
leg's own and are written afresh.  Supported and Require are dropped (one side must
not agree to an extension the other would then see used, 100rel among them; session
timers are each leg's own, written by `session_timer`), and so are Session-Expires,
Min-SE and Allow (the far side's methods are not what the pair relays).  What is copied
describes the body or the session to the far user and names no host of the near side.
"""

from __future__ import annotations

from typing import Final

from shared.sip.errors import SipParseError
from shared.sip.headers import canonical_name
from shared.sip.message import Request, Response

RELAYED: Final = (
    "content-type",
    "content-disposition",
    "content-encoding",
    "content-language",
    "accept",
    "accept-language",
    "subject",
    "priority",
    "reason",
    "info-package",
    "recv-info",
)
"""Header fields copied (every value of each) from a request or response on one leg to its
counterpart on the other; everything else is dropped."""


_BREAKS: Final = frozenset("\r\n")


def relayed_headers(message: Request | Response) -> list[tuple[str, str]]:
    """The allow-listed fields of `message` as (name, value) pairs, in the list's order.

    A field that does not decode, or holds a bare line break (which would inject a
    header on the other leg), is dropped like one not listed: the far side's bad bytes
    must not stop the call."""
    relayed: list[tuple[str, str]] = []
    for key in RELAYED:
        try:
            values = message.headers(key)
        except SipParseError:
            continue
        name = canonical_name(key)
        relayed.extend((name, value) for value in values if not _BREAKS.intersection(value))
    return relayed
