"""Out-of-dialog routing of a dialled number: dialplan, routing lookup, gateways as next hops.

The lookup is the routing cache's (`shared.routing_table.cache`), seen
through the `RouteLookup` protocol so the core needs no network and tests can
hand it any table.  Which group and dialplan apply depends on who is calling;
`Classifier` answers that from the source address (by default one group for
everyone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from shared.dns import Located, NameSpec
from shared.dns.locate import name_spec
from shared.routing_table.cache import Route
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import SipUri, TelUri, Uri, UserSlot, parse_uri

log = logging.getLogger("callmesh.edge")

_VISUAL_SEPARATORS: Final = str.maketrans("", "", "-.()")
_READY: Final = frozenset({"up", "unknown"})


class RouteLookup(Protocol):
    def lookup(self, number: str, group: str = "0") -> Route | None: ...

    def translate(self, dialplan_id: str, number: str) -> str: ...


class SetSelection(Protocol):
    """Dispatcher sets (``services.edge.destinations``): (set id, destination URI) pairs to try,
    and the health of a destination's DNS targets (`{uri}@{label}`)."""

    def destinations(
        self, set_ids: tuple[str, ...], request: Request | None
    ) -> Iterable[tuple[str, str]]: ...

    def target_state(self, set_id: str, key: str) -> str: ...


class NameTargets(Protocol):
    """RFC 3263 from memory (``shared.dns.Names``): raises ``NeedRecords`` when it must ask DNS."""

    def targets(self, spec: NameSpec, now: float) -> Located: ...

    def failed(self, label: str, now: float, retry_after: float | None = None) -> float: ...


@dataclass(frozen=True, slots=True)
class CallerProfile:
    """The routing group a caller's numbers are looked up in, and the dialplan applied
    to them first (``services.edge.policy.callers`` picks one per source address and
    dialled number); ``peer`` is the routing table's peer the call belongs to, and
    ``tech_prefix`` what identified it at the start of the number (stripped before
    the dialplan)."""

    group: str = "0"
    dialplan: str | None = None
    peer: str | None = None
    tech_prefix: str = ""


DEFAULT_PROFILE: Final = CallerProfile()
Classifier = Callable[[Destination, str], CallerProfile]


def everyone_in_group_0(_source: Destination, _number: str) -> CallerProfile:
    return DEFAULT_PROFILE


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    uri: Final[str]
    destination: Final[Destination]
    gateway_id: Final[str | None]
    gateway_address: Final[str]
    rule_id: Final[str | None]
    """The routing rule that chose it (its policies apply to the branch)."""
    q: Final[float | None]
    routes: Final[tuple[str, ...]]
    flow_token: Final[str | None]
    remote_flow: Final[str | None]
    set_id: Final[str | None]
    set_uri: Final[str]
    """For a dispatcher destination: its set and its URI as configured there."""
    relay: Final[bool]
    """The media of a call along this hop goes through rtpengine (the policy said so for it,
    or the dialog's signed Record-Route does): its SDP is rtpengine's."""
    udp_fallback: Final[Destination | None]
    """Set when the request goes by TCP only because it is too large for UDP (RFC 3261
    §18.1.1): where to retry it over UDP if the TCP connection fails."""
    target: Final[str]
    """For a gateway or destination given by name: the target DNS gave (`transport:name:port`,
    an SRV record's target), which a failure marks down alone."""
    name: Final[NameSpec | None]
    """For a Route's or Request-URI's host given by name: what RFC 3263 resolves into this
    hop's targets (`NumberRouter.by_name`) just before it is sent."""

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        uri: str,
        destination: Destination,
        gateway_id: str | None = None,
        gateway_address: str = "",
        rule_id: str | None = None,
        q: float | None = None,
        routes: tuple[str, ...] = (),
        flow_token: str | None = None,
        remote_flow: str | None = None,
        set_id: str | None = None,
        set_uri: str = "",
        relay: bool = False,
        udp_fallback: Destination | None = None,
        target: str = "",
        name: NameSpec | None = None,
    ) -> None:
        self.uri = uri
        self.destination = destination
        self.gateway_id = gateway_id
        self.gateway_address = gateway_address
        self.rule_id = rule_id
        self.q = q
        self.routes = routes
        self.flow_token = flow_token
        self.remote_flow = remote_flow
        self.set_id = set_id
        self.set_uri = set_uri
        self.relay = relay
        self.udp_fallback = udp_fallback
        self.target = target
        self.name = name

    @property
    def routed_by_name(self) -> bool:
        """A DNS target of a Route or Request-URI: only no answer (a transport error, a
        timeout) or a 503 moves on to the name's next target (RFC 3263 §4.3)."""
        return bool(self.target) and self.gateway_id is None and self.set_id is None


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


Peer = tuple[UserSlot, Destination, NameSpec | None]
"""A gateway's (or set destination's) address made ready to dial: the URI with the
user part open, where it sends (which the user never changes), and, for a host given
by name, what RFC 3263 resolves per call instead."""

Found = tuple[list[Hop], int] | None
"""`NumberRouter.hops_for`' answer: (usable hops, how many skipped as down), or None."""


class NumberRouter:
    """Turns a dialled number into the ordered gateway hops to try."""

    def __init__(
        self,
        lookup: RouteLookup,
        classify: Classifier = everyone_in_group_0,
        sets: SetSelection | None = None,
        names: NameTargets | None = None,
        health: Callable[[str], str] | None = None,
        *,
        b2bua: Callable[[Hop], bool] | None = None,
    ) -> None:
        self._lookup = lookup
        self._b2bua = b2bua
        """Whether a call whose first hop this is goes to the B2BUA (`mode`, the gateway's
        else its rule's: `shared.routing_table.modes`); None: never."""
        self._classify = classify
        self._sets = sets
        self._names = names
        self._health = health
        """A gateway's DNS target's state by `{gateway id}@{label}` (the health service's)."""
        self._peers: dict[str, Peer | None] = {}
        self._unresolved: dict[str, str] = {}
        """Names that gave no target, with the reason last logged (logged again on a change)."""

    def b2bua(self, hops: Sequence[Hop]) -> bool:
        """Whether a call to `hops` is the B2BUA's: its first hop's mode says so."""
        return self._b2bua is not None and bool(hops) and self._b2bua(hops[0])

    def caller_profile(self, source: Destination, number: str) -> CallerProfile:
        return self._classify(source, number)

    def translate(self, number: str, profile: CallerProfile) -> str:
        """`number` without the profile's tech prefix, through its dialplan if it has one."""
        if profile.tech_prefix:
            number = number[len(profile.tech_prefix) :]
        if profile.dialplan is not None:
            try:
                return self._lookup.translate(profile.dialplan, number)
            except KeyError:
                log.warning("dialplan %r does not exist; number used as dialled", profile.dialplan)
        return number

    def hops_for(
        self, number: str, group: str, request: Request | None = None, now: float = 0.0
    ) -> Found:
        """(usable hops in order, how many were skipped as down or unresolvable), or None
        for no route.

        `number` is the one to route (after the dialplan), `group` the routing group.
        A rule's dispatcher sets come first (their healthy destinations in each
        set's order, the routed number as user), then its gateways. A gateway or
        destination given by name is one hop per target DNS gives it (RFC 3263:
        SRV priorities, weights), so failover tries its next target before the
        next gateway; may raise ``NeedRecords`` (ask DNS, then route again).
        """
        route = self._lookup.lookup(number, group)
        if route is None:
            return None
        usable = route.usable()
        hops: list[Hop] = []
        unresolved = 0
        if route.sets and self._sets is not None:
            for set_id, address in self._sets.destinations(route.sets, request):
                peer = self._peer(address)
                if peer is not None:
                    uri = peer[0].with_user(route.number)
                    unresolved += self._add(hops, peer, uri, now, set_id=set_id, set_uri=address)
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
            if peer[2] is None:
                hops.append(Hop(uri, peer[1], gateway.id, address, rule_id))
            else:
                unresolved += self._add(
                    hops, peer, uri, now, gateway_id=gateway.id, address=address, rule_id=rule_id
                )
        return hops, len(route.hops) - len(usable) + unresolved

    def _add(
        self,
        hops: list[Hop],
        peer: Peer,
        uri: str,
        now: float,
        *,
        gateway_id: str | None = None,
        address: str = "",
        rule_id: str | None = None,
        set_id: str | None = None,
        set_uri: str = "",
    ) -> int:
        """Append the hops to `peer`, one per DNS target for a name; 1 if it has none."""
        spec = peer[2]
        names = self._names
        if spec is None or names is None:
            hops.append(
                Hop(uri, peer[1], gateway_id, address, rule_id, set_id=set_id, set_uri=set_uri)
            )
            return 0
        located = names.targets(spec, now)
        if not located.targets:
            what = (
                f"gateway {gateway_id}" if gateway_id else f"destination {set_uri} of set {set_id}"
            )
            self._log_unresolved(what, spec.host, located.reason)
            return 1
        self._unresolved.pop(spec.host, None)
        pinned = peer[1].pinned
        targets = located.targets
        health = self._health
        sets = self._sets
        if (health is not None and gateway_id is not None) or (
            sets is not None and set_id is not None
        ):
            states = [
                (t, self._target_state(t.label, gateway_id, set_id, set_uri)) for t in targets
            ]
            targets = [t for t, state in states if state in _READY]
            targets += [t for t, state in states if state == "probing"]  # suspected: last
            if not targets:
                return 1
        for target in targets:
            destination = Destination(target.transport, target.address, target.port, pinned=pinned)
            hops.append(
                Hop(
                    uri,
                    destination,
                    gateway_id,
                    address,
                    rule_id,
                    set_id=set_id,
                    set_uri=set_uri,
                    target=target.label,
                )
            )
        return 0

    def _target_state(
        self, label: str, gateway_id: str | None, set_id: str | None, set_uri: str
    ) -> str:
        """The health service's state of a gateway's or destination's DNS target."""
        if gateway_id is not None and self._health is not None:
            return self._health(f"{gateway_id}@{label}")
        if set_id is not None and self._sets is not None:
            return self._sets.target_state(set_id, f"{set_uri}@{label}")
        return "unknown"

    def by_name(self, hop: Hop, now: float) -> tuple[list[Hop], str]:
        """A Route's or Request-URI's hop given by name as one hop per DNS target, the failed
        ones last (or none, and why); `NeedRecords` when the cache lacks some."""
        spec = hop.name
        names = self._names
        if spec is None or names is None:  # no resolver here: the transport resolves the name
            return [replace(hop, name=None)], ""
        located = names.targets(spec, now)
        if not located.targets:
            self._log_unresolved("route", spec.host, located.reason)
            return [], f"{spec.host} does not resolve: {located.reason}"
        pinned = hop.destination.pinned
        return [
            replace(
                hop,
                destination=Destination(t.transport, t.address, t.port, pinned=pinned),
                target=t.label,
                name=None,
            )
            for t in located.targets
        ], ""

    def target_failed(self, label: str, now: float, retry_after: float | None) -> None:
        """A DNS target (`Hop.target`) failed a request: the next calls try it last."""
        if self._names is not None:
            hold = self._names.failed(label, now, retry_after)
            log.info("DNS target %s failed: tried last for %.0f s", label, hold)

    def _log_unresolved(self, what: str, host: str, reason: str) -> None:
        """One line per name and reason, not one per call."""
        if self._unresolved.get(host) == reason:
            return
        if len(self._unresolved) > 10_000:
            self._unresolved.clear()
        self._unresolved[host] = reason
        log.warning("%s skipped: %s does not resolve (%s)", what, host, reason)

    def _peer(self, address: str) -> Peer | None:
        """A gateway's (or set destination's) address parsed once; a bad one is logged once."""
        if address in self._peers:
            return self._peers[address]
        peer: Peer | None = None
        try:
            parsed = parse_uri(address)
            destination = destination_of(parsed)
            if isinstance(parsed, SipUri):
                peer = (UserSlot(parsed), destination, name_spec(parsed))
        except SipError as error:
            log.warning("gateway address %r unusable: %s", address, error.reason)
        if len(self._peers) > 100_000:
            self._peers.clear()
        self._peers[address] = peer
        return peer
