"""Out-of-dialog routing of a dialled number: dialplan, routing lookup, gateways as next hops.

The lookup is the routing cache's (`shared.routing_table.cache`), seen
through the `RouteLookup` protocol so the core needs no network and tests can
hand it any table.  Which group and dialplan apply depends on who is calling;
`Classifier` answers that from the source address (by default one group for
everyone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from shared.routing_table.cache import Route
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import SipUri, TelUri, Uri, UserSlot, parse_uri

log = logging.getLogger("callmesh.edge")

_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")


class RouteLookup(Protocol):
    def lookup(self, number: str, group: str = "0") -> Route | None: ...

    def translate(self, dialplan_id: str, number: str) -> str: ...


class SetSelection(Protocol):
    """Dispatcher sets (``services.edge.destinations``): (set id, destination URI) pairs to try."""

    def destinations(
        self, set_ids: tuple[str, ...], request: Request | None
    ) -> Iterable[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class CallerProfile:
    """The routing group a caller's numbers are looked up in, and the dialplan applied
    to them first (``services.edge.policy.callers`` picks one per source address)."""

    group: str = "0"
    dialplan: str | None = None


DEFAULT_PROFILE = CallerProfile()
Classifier = Callable[[Destination], CallerProfile]


def everyone_in_group_0(_source: Destination) -> CallerProfile:
    return DEFAULT_PROFILE


@dataclass(frozen=True, slots=True)
class Hop:
    """One next hop: the Request-URI to send, where, and the gateway or set destination it is.

    A registered contact has `q`: hops of equal `q` in a row are forked in
    parallel, and any failure but a 6xx moves on; gateways (`q` None) are
    tried one at a time.  `routes` become the branch's Route set;
    `flow_token` names the flow the hop is (it goes into our Record-Route);
    `remote_flow`, a flow of the edge that `routes` (one entry) leads to: the
    Route to it is signed for the call as our Record-Route is, or that edge
    would not follow it (no open relay).
    """

    uri: str
    destination: Destination
    gateway_id: str | None = None
    gateway_address: str = ""
    rule_id: str | None = None
    """The routing rule that chose it (its policies apply to the branch)."""
    q: float | None = None
    routes: tuple[str, ...] = ()
    flow_token: str | None = None
    remote_flow: str | None = None
    set_id: str | None = None
    set_uri: str = ""
    """For a dispatcher destination: its set and its URI as configured there."""
    udp_fallback: Destination | None = None
    """Set when the request goes by TCP only because it is too large for UDP (RFC 3261
    §18.1.1): where to retry it over UDP if the TCP connection fails."""


def dialled_number(uri: Uri) -> str | None:
    """The number a Request-URI dials (`sip:+1407…@host`, `tel:+1-407-…`), or None."""
    if isinstance(uri, TelUri):
        number = uri.number.translate(_VISUAL_SEPARATORS)
    elif isinstance(uri, SipUri) and uri.user is not None:
        number = uri.user
    else:
        return None
    digits = number[1:] if number[:1] == "+" else number
    return number if digits.isascii() and digits.isdigit() else None


Peer = tuple[UserSlot, Destination]
"""A gateway's (or set destination's) address made ready to dial: the URI with the
user part open, and where it sends (which the user never changes)."""

Found = tuple[list[Hop], int] | None
"""`NumberRouter.hops_for`' answer: (usable hops, how many skipped as down), or None."""


class NumberRouter:
    """Turns a dialled number into the ordered gateway hops to try."""

    def __init__(
        self,
        lookup: RouteLookup,
        classify: Classifier = everyone_in_group_0,
        sets: SetSelection | None = None,
    ) -> None:
        self._lookup = lookup
        self._classify = classify
        self._sets = sets
        self._peers: dict[str, Peer | None] = {}

    def caller_profile(self, source: Destination) -> CallerProfile:
        return self._classify(source)

    def translate(self, number: str, profile: CallerProfile) -> str:
        """`number` through the profile's dialplan, if it has one."""
        if profile.dialplan is not None:
            try:
                return self._lookup.translate(profile.dialplan, number)
            except KeyError:
                log.warning("dialplan %r does not exist; number used as dialled", profile.dialplan)
        return number

    def hops_for(self, number: str, group: str, request: Request | None = None) -> Found:
        """(usable hops in order, how many were skipped as down), or None for no route.

        `number` is the one to route (after the dialplan), `group` the routing group.
        A rule's dispatcher sets come first (their healthy destinations in each
        set's order, the routed number as user), then its gateways.
        """
        route = self._lookup.lookup(number, group)
        if route is None:
            return None
        usable = route.usable()
        hops = []
        if route.sets and self._sets is not None:
            for set_id, address in self._sets.destinations(route.sets, request):
                peer = self._peer(address)
                if peer is not None:
                    uri = peer[0].with_user(route.number)
                    hops.append(Hop(uri, peer[1], set_id=set_id, set_uri=address))
        peers = self._peers
        rule_id: str | None = None
        for hop in usable:
            gateway = hop.gateway
            address = gateway.address
            peer = peers[address] if address in peers else self._peer(address)
            if peer is None:
                continue
            if rule_id is None:
                rule_id = route.rule_id
            uri = peer[0].with_user(hop.number)
            hops.append(Hop(uri, peer[1], gateway.id, address, rule_id))
        return hops, len(route.hops) - len(usable)

    def _peer(self, address: str) -> Peer | None:
        """A gateway's (or set destination's) address parsed once; a bad one is logged once."""
        if address in self._peers:
            return self._peers[address]
        peer: Peer | None = None
        try:
            parsed = parse_uri(address)
            destination = destination_of(parsed)
            if isinstance(parsed, SipUri):
                peer = (UserSlot(parsed), destination)
        except SipError as error:
            log.warning("gateway address %r unusable: %s", address, error.reason)
        if len(self._peers) > 100_000:
            self._peers.clear()
        self._peers[address] = peer
        return peer
