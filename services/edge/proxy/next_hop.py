"""Next-hop selection: by Route (loose and strict routing, our own entries popped, flows),
by Request-URI (the registrar for a REGISTER, a subscriber's bindings, the gateways for a
dialled number), with the loop check and the requests addressed to the edge itself.

With `Subscribers` set, out-of-dialog requests from untrusted sources must
authenticate (407) before the callee is looked up, and a question the
location directory cannot answer from memory parks the request (`Lookup`)
until the adapter has read Redis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from services.edge import metrics
from services.edge.location import Missing
from services.edge.proxy.actions import (
    Acquire,
    Action,
    AuthFailed,
    HandOff,
    Lookup,
    Register,
    Resolve,
    Screen,
)
from services.edge.proxy.branches import hash_in_branch
from services.edge.proxy.contacts import target_of
from services.edge.proxy.dialogs import OwnRoute
from services.edge.proxy.flows import FLOW_SEPARATOR, is_from_flow
from services.edge.proxy.forwarding import Forwarding, Parked
from services.edge.proxy.nat import behind_nat
from services.edge.proxy.relay import MediaRelaying
from services.edge.proxy.routes import Hop, dialled_number
from services.edge.proxy.subscribers import (
    Subscribers,
    authenticate,
    binding_hops,
    challenge_register,
)
from shared.dns import NeedRecords
from shared.dns.locate import name_spec
from shared.fraud.rules import FraudQuery
from shared.limits.model import LimitQuery
from shared.protection import WrongCredentialsError
from shared.sip.address import Address
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of, transport_of
from shared.sip.uri import SipUri, Uri

DIALOG_CREATING: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
MAX_DNS_ROUNDS: Final = 6
"""Round trips to DNS one request may wait for (NAPTR, SRV, addresses, a NAPTR's next
choice); past it the cache is being emptied faster than it fills: 500."""
NO_ROUTE_REASON: Final = 'SIP;cause=404;text="no route"'


class Limiting(Exception):  # noqa: N818 - a question, like `Missing`
    """A new call's shared limits must be asked (an `Acquire`) before it is routed."""

    def __init__(self, query: LimitQuery) -> None:
        super().__init__(query)
        self.query = query


class Screening(Exception):  # noqa: N818 - a question, like `Missing`
    """A new call's fraud counts must be asked (a `Screen`) before it is routed."""

    def __init__(self, query: FraudQuery) -> None:
        super().__init__(query)
        self.query = query


class NextHop(MediaRelaying):
    """Finds where a request goes next, then hands it to forwarding."""

    def _proceed(self, parked: Parked, now: float, actions: list[Action]) -> None:
        """Route an out-of-dialog request by its Request-URI, or park it for a `Lookup`."""
        request = parked.request
        try:
            if (  # one with a pre-loaded Route goes where that Route says
                request.method == "REGISTER" and self.subscribers is not None and not request.routes
            ):
                self._register(parked, self.subscribers, now, actions)
                return
            hops = self._hops_by_uri(parked, now)
        except Missing as missing:
            self._parked[parked.server] = parked
            actions.append(Lookup(missing.query, parked.server))
            return
        except Screening as screening:
            parked.fraud = screening.query
            self._parked[parked.server] = parked
            actions.append(Screen(screening.query, parked.server))
            return
        except Limiting as limiting:
            parked.limits = limiting.query
            self._parked[parked.server] = parked
            actions.append(Acquire(limiting.query, parked.server))
            return
        except NeedRecords as need:  # a gateway by name not in the DNS cache (yet)
            parked.dns_rounds += 1
            if parked.dns_rounds > MAX_DNS_ROUNDS:
                answer = self._answer(
                    parked.server, 500, "Server Internal Error (DNS)", now, actions
                )
                self._publish_refused(request, parked.source, answer, now, actions, parked=parked)
                return
            self._parked[parked.server] = parked
            actions.append(Resolve(tuple(need.keys), parked.server))
            return
        except WrongCredentialsError as failed:
            self._parked[parked.server] = parked
            actions.append(
                AuthFailed(parked.server, parked.source, failed.user, failed.realm, request.method)
            )
            return
        except SipError as error:
            answer = self._answer(
                parked.server, error.status, error.reason, now, actions, headers=error.headers
            )
            self._publish_refused(request, parked.source, answer, now, actions, parked=parked)
            return
        if self.media is not None:  # a B2BUA pair's media too: the same policy decides
            hops = self._relayed_hops(hops, request, parked.source)
        if self.b2bua_calls is not None and request.method == "INVITE" and self.router.b2bua(hops):
            self.table.discard(parked.server)  # the B2BUA answers the caller from here on
            self._publish_handed_off(parked, hops, now, actions)
            actions.append(HandOff(request.to_bytes(), parked.source, tuple(hops)))
            return
        record = request.method in DIALOG_CREATING
        forwarding = Forwarding(parked.server, hops, parked.loop_hash, parked.inbound, record)
        forwarding.policy = parked.policy
        if record:
            forwarding.caller_flow = self._caller_flow(request, parked.source)
        events = self.call_events
        if events is not None and request.method == "INVITE":
            rule = next((hop.rule_id for hop in hops if hop.rule_id is not None), None)
            actions.append(
                self._call_started(events, request, parked.source, now, parked=parked, rule=rule)
            )
            forwarding.call = events.notes(request, now)
        self._start(forwarding, now, actions)

    def _register(
        self, parked: Parked, subscribers: Subscribers, now: float, actions: list[Action]
    ) -> None:
        """A REGISTER for us or one of our domains goes to the registrar (its 200/401 back)."""
        request = parked.request
        uri = request.uri
        if not self._for_us(request) and not (
            isinstance(uri, SipUri) and subscribers.directory.is_local_domain(uri.host, now)
        ):
            raise SipError("Not Found (not a domain of ours)", 404)
        challenge_register(request, subscribers, now, parked.source.host)
        if behind_nat(request, parked.source):
            metrics.NAT_REGISTRATIONS.value += 1
        edge = self.interfaces.for_edges(parked.inbound)
        edge_address = edge.record_route[1:-1].replace(";lr", "")
        actions.append(Register(parked.server, request.to_bytes(), parked.source, edge_address))

    def _hops_by_uri(self, parked: Parked, now: float) -> list[Hop]:
        """The next hops of an out-of-dialog request: its pre-loaded Route, a subscriber's
        bindings, or the gateways for a dialled number; SipError otherwise.

        An untrusted caller authenticates first, whatever the method (a MESSAGE
        or OPTIONS reaches a phone as surely as an INVITE), unless the request
        is for the edge itself, and before the callee is looked up: until the
        caller has proved a password the answer cannot tell whether a user exists.
        """
        request = parked.request
        source = parked.source
        subscribers = self.subscribers
        uri = request.uri
        if (
            subscribers is not None
            and not parked.authenticated
            and not subscribers.trusted(source)
            and not self._for_us(request)
        ):
            authenticate(request, subscribers, now, source.host)
            parked.authenticated = True
        route_hop = self._next_hop_by_route(request) if request.routes else None
        if route_hop is not None:
            return [route_hop]  # a pre-loaded route set is followed, not looked up
        if (
            subscribers is not None
            and isinstance(uri, SipUri)
            and uri.user
            and subscribers.directory.is_local_domain(uri.host, now)
        ):
            hops = self._subscriber_hops(uri, subscribers, now, parked)
            if hops is not None:
                return hops
        number = dialled_number(uri)
        if number is None:
            reason = "Not Found" if subscribers else "Not Found (registrar not available)"
            raise SipError(reason, 404)
        if parked.policy is None:  # once, even when DNS made the request wait
            parked.policy = self.policies.admit_call(request, source, now)  # call limits
        router = self.router
        profile = router.caller_profile(source, number)
        parked.callee = routed = router.translate(number, profile)
        parked.group, parked.peer = profile.group, profile.peer
        if parked.fraud is None:  # fraud before routing: a blocked account goes no further
            screening = self.policies.fraud_for(request, profile.peer, routed)
            if screening is not None:
                raise Screening(screening)
        else:  # asked: the verdict is in
            self.policies.screened(parked.fraud, parked.fraud_verdict)
        found = router.hops_for(routed, profile.group, request, now)
        found = self.policies.decide(request, source, number, found)  # the routing hook
        if found is None:
            raise SipError(
                f"Not Found (no route for {number})", 404, (("Reason", NO_ROUTE_REASON),)
            )
        hops, skipped = found
        if not hops:
            raise SipError(
                f"Temporarily Unavailable ({skipped} gateways down or unresolvable)", 480
            )
        if parked.limits is not None:  # asked: the verdict is in
            return self.policies.limited(request, parked.limits, parked.verdict, hops, now)
        query = self.policies.limits_for(request, source, profile.peer, hops, now)
        if query is not None:
            raise Limiting(query)
        return hops

    def _subscriber_hops(
        self, uri: SipUri, subscribers: Subscribers, now: float, parked: Parked
    ) -> list[Hop] | None:
        """The hops to `uri`'s bindings; 480 without any; None when it is no subscriber."""
        directory = subscribers.directory
        user, domain = str(uri.user), uri.host.lower()
        aor = f"sip:{user}@{domain}"
        bindings = directory.bindings(aor, now)
        if bindings:
            hops = binding_hops(bindings, subscribers.flows, self.interfaces)
            if hops:
                parked.callee = aor
                return hops
        elif not directory.subscriber_exists(user, domain, now):
            return None
        parked.callee = aor
        raise SipError("Temporarily Unavailable", 480)

    def _flow_hop(self, request: Request, token: str | None, source: Destination) -> Hop | None:
        """The hop to the first flow named in our Route that the request did not come from
        (none: it came from the only one, and follows the rest of its route)."""
        if token is None or self.subscribers is None:
            return None
        hop = None
        for part in token.split(FLOW_SEPARATOR):  # every part checked, the first taken
            flow = self.subscribers.flows.open(part)
            if flow is None:
                raise SipError("Forbidden (bad flow token)", 403)
            if hop is None and not is_from_flow(flow, source):
                hop = Hop(request.uri_text, flow, flow_token=part)
        return hop

    def _caller_flow(self, request: Request, source: Destination) -> str | None:
        """The flow token of an untrusted caller the far end can reach only by where its
        request came from: behind NAT, or on a connection (recorded in our Record-Route)."""
        subscribers = self.subscribers
        if subscribers is None or subscribers.trusted(source):
            return None
        if source.connection_id is None and not behind_nat(request, source):
            return None
        metrics.NAT_CALLERS.value += 1
        return subscribers.flows.mint(source)

    def _sender_flow(self, token: str, source: Destination) -> str | None:
        """The flow of our Route that an in-dialog request came from (a phone's target refresh,
        whose Contact the far end must reach), or None."""
        subscribers = self.subscribers
        if subscribers is None:
            return None
        for part in token.split(FLOW_SEPARATOR):
            flow = subscribers.flows.open(part)
            if flow is not None and is_from_flow(flow, source):
                return part
        return None

    def _for_us(self, request: Request) -> bool:
        """Addressed to the edge itself: our host:port, and no user (or no hop left to go)."""
        uri = request.uri
        return (
            isinstance(uri, SipUri)
            and (uri.user is None or request.max_forwards == 0)
            and self.interfaces.is_ours(uri.host, uri.port, transport_of(uri))
            and all(self._is_our_route(route) for route in request.routes)
        )

    def _check_loop(self, request: Request, hash_now: str) -> None:
        """482 if one of our Vias carries the hash this request has now (§16.3 step 4)."""
        for via in request.vias:
            seen = hash_in_branch(via.branch)
            if seen == hash_now and self.interfaces.is_ours(
                via.host, via.port, via.transport.lower()
            ):
                raise SipError("Loop Detected", 482)

    def _is_our_route(self, route: Address) -> bool:
        uri = route.uri
        if not isinstance(uri, SipUri):
            return False
        return self.interfaces.is_ours(uri.host, uri.port, transport_of(uri))

    def _process_routes(self, request: Request, own: OwnRoute) -> str | None:
        """Strict-router fix-up, then pop our own Route entries (§16.4), and restore a Contact
        of ours in the Request-URI; the flow token of either."""
        if own.strict:  # a strict router put our Record-Route URI into the Request-URI
            values = request.headers("route")
            request.set_uri(str(request.routes[-1].uri))
            request.remove_header("route")
            if len(values) > 1:
                request.add_header("Route", ", ".join(values[:-1]))
        for _ in range(own.count):
            request.pop_route()
        contact = own.contact
        if contact is not None:  # a Contact of ours: the phone's own back as the Request-URI
            if not self.dialogs.contact_valid(contact, request.call_id):
                raise SipError("Forbidden (bad contact)", 403)
            request.set_uri(target_of(contact.target))
        return own.flow

    def _expand_name(
        self, forwarding: Forwarding, at: int, now: float, actions: list[Action]
    ) -> bool:
        """Hop `at`'s name as its DNS targets (RFC 3263, from the cache), so a transport error
        or timeout moves on to the name's next target; False while DNS is asked.

        A contact's hop (forked by q-value) keeps its q on the first target only: the others
        are tried one by one after it, never in parallel with it (two hosts of one SBC would
        ring the phone twice); one forked in parallel with other contacts gets its first
        target alone (a branch of a parallel fork has no next target to go on to)."""
        hops = forwarding.hops
        hop = hops[at]
        try:
            targets, why = self.router.by_name(hop, now)
        except NeedRecords as need:
            forwarding.dns_rounds += 1
            if forwarding.dns_rounds <= MAX_DNS_ROUNDS:
                self._resolving[forwarding.server] = forwarding
                actions.append(Resolve(tuple(need.keys), forwarding.server))
                return False
            targets, why = [], "DNS answers expire faster than they come"
        if targets and hop.q is not None:
            if at or (len(hops) > 1 and hops[1].q == hop.q):
                targets = targets[:1]
            else:
                targets[1:] = [replace(target, q=None) for target in targets[1:]]
        hops[at : at + 1] = targets
        if why:
            forwarding.unresolved = why
        return True

    def _take_channel(self, forwarding: Forwarding, actions: list[Action]) -> bool:
        """The call fails over to the next hop: a capped gateway (or one of a capped carrier)
        whose channel it does not hold yet is asked for first (an `Acquire`), so a failover
        counts against the cap as a first attempt does; False while asked."""
        query = self.policies.channel_for(forwarding.request.call_id, forwarding.hops[0])
        if query is None:
            return True
        self._channeling[forwarding.server] = (forwarding, query)
        actions.append(Acquire(query, forwarding.server))
        return False

    def _next_hop_by_route(self, request: Request) -> Hop | None:
        """Loose routing to the top Route; strict-route compatibility for one without `lr`.
        A host given by name is resolved (RFC 3263) when the hop is sent (`_expand_name`)."""
        routes = request.routes
        if not routes:
            uri = request.uri
            if isinstance(uri, SipUri) and self.interfaces.is_ours(
                uri.host, uri.port, transport_of(uri)
            ):
                return None
            return _hop(request.uri_text, uri)
        top = routes[0].uri
        if isinstance(top, SipUri) and not top.has_param("lr"):
            # §16.6 step 6: the next hop is a strict router; it expects the Request-URI.
            request.add_header("Route", f"<{request.uri_text}>")
            request.pop_route()
            request.set_uri(str(top))
        return _hop(request.uri_text, top)


def _hop(uri_text: str, next_hop: Uri) -> Hop:
    """The hop to `next_hop` (a Route's or the Request-URI's), with its name if it has one."""
    spec = name_spec(next_hop) if isinstance(next_hop, SipUri) else None
    return Hop(uri_text, destination_of(next_hop), name=spec)
