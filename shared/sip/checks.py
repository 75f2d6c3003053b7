"""The request checks a proxy makes before forwarding (RFC 3261 §16.3), as `SipError`s.

Kept apart from `Message.validate` because they are policy, not syntax:
what schemes and extensions this proxy supports is its own business.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from shared.sip.errors import SipError
from shared.sip.message import Request

ROUTABLE_SCHEMES: Final = frozenset({"sip", "sips", "tel"})


def check_proxy_request(request: Request, *, supported: Collection[str] = ()) -> None:
    """Raise `SipError` with the status a proxy must answer, or return if the request may go on.

    416 for a Request-URI scheme the proxy cannot route (RFC 4475 §3.3.2),
    483 for Max-Forwards 0 (§3.3.11), 420 with `Unsupported` for Proxy-Require
    option tags not in `supported` (§3.3.5).  Syntax errors surface as `SipParseError`.
    """
    if request.uri.scheme not in ROUTABLE_SCHEMES:
        raise SipError("Unsupported URI Scheme", 416)
    if request.max_forwards == 0:
        raise SipError("Too Many Hops", 483)
    unsupported = [tag for tag in request.headers("proxy-require") if tag not in supported]
    if unsupported:
        raise SipError("Bad Extension", 420, (("Unsupported", ", ".join(unsupported)),))
