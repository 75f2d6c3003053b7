"""Where a B2BUA call's transfer goes (``POST /v1/calls/{id}:transfer``): a SIP URI as given,
or a number routed like a new call's Request-URI.

A URI is sent to as a next hop is (`destination_of`: its maddr or host, its transport, the
default port; a host by name is left to the transport's resolver, no NAPTR/SRV).  A number
goes through the edge's routing as the caller's own call did: the caller's profile (by the
caller's leg's address), its dialplan, the routing rule and its gateways' addresses and
health from the edge's caches; the first usable hop is the target (no failover to the next
on a refusal: the transfer then fails and the call stays).  Not applied to a transfer:
authentication, the fraud screen, limits, the routing hook (the call was admitted once).
"""

from __future__ import annotations

import re
from typing import Final

from services.edge.b2bua.engine import PairTarget
from services.edge.proxy.routes import NumberRouter
from shared.dns import NeedRecords
from shared.sip.errors import SipError
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import SipUri, parse_uri

NUMBER: Final = re.compile(r"\+?[0-9]{1,32}")
"""A number to route: digits, an optional leading +."""


class TransferTargetError(Exception):
    """No target: the HTTP status saying why (404 no route, 422 not usable, 503 not now)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def uri_target(to: str) -> PairTarget:
    """A `sip:`/`sips:` URI with a host, as a target; `TransferTargetError` (422) otherwise."""
    try:
        uri = parse_uri(to)
        if not isinstance(uri, SipUri) or not uri.host:
            raise SipError("not a SIP URI")
        if uri.headers:
            raise SipError("a Request-URI carries no headers (?...)")
        return PairTarget(str(uri), destination_of(uri))
    except (SipError, ValueError) as error:
        raise TransferTargetError(422, f"`to` is not a usable SIP URI: {error}") from None


def number_target(router: NumberRouter, number: str, caller: Destination, now: float) -> PairTarget:
    """The first usable hop of `number`'s route, as the caller's own call would be routed."""
    profile = router.caller_profile(caller, number)
    routed = router.translate(number, profile)
    try:
        found = router.hops_for(routed, profile.group, None, now)
    except NeedRecords:
        raise TransferTargetError(503, "the route's gateway is not resolved yet: retry") from None
    if found is None:
        raise TransferTargetError(404, f"no route for {number}")
    hops, skipped = found
    if not hops:
        raise TransferTargetError(503, f"no usable gateway ({skipped} down or unresolvable)")
    return PairTarget(hops[0].uri, hops[0].destination)


def is_number(to: str) -> bool:
    return NUMBER.fullmatch(to) is not None
