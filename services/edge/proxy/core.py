"""The transaction-stateful proxy of RFC 3261 §16, sans-IO.

Bytes, their source and the time go in (`receive`, `expire`,
`transport_failed`, and the outcomes of its round trips: `registered`,
`resume`); `Send`/`Publish`/`Register`/`Lookup` actions come out.  The core
holds the transaction table and, per server transaction, a `Forwarding`
(serial failover over gateways, parallel forking over a subscriber's
contacts).  It keeps nothing about dialogs: an in-dialog request is routed
from its Route headers alone (a flow token in one of ours names the
connection of a phone behind us), which is what lets a call outlive an edge
restart; and only along a Record-Route the edge signed, unless it comes from
a trusted source (`dialogs`: no open relay).

With `Subscribers` set, REGISTERs for our domains go to the registrar,
requests for a subscriber of a local domain go to its bindings, and
out-of-dialog requests from untrusted sources must authenticate (407).  A
question the location directory cannot answer from memory parks the request
(`Lookup`) until the adapter has read Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from services.edge import metrics
from services.edge.dispatch import ActiveCalls
from services.edge.dispatch.metrics import DESTINATION_FAILURES
from services.edge.interfaces import Interface, Interfaces
from services.edge.location import Missing
from services.edge.overload import LoadShedder
from services.edge.proxy.actions import Action, AuthFailed, Lookup, Publish, Register, Send
from services.edge.proxy.branches import NO_LOOP_HASH, BranchMaker, hash_in_branch, loop_hash
from services.edge.proxy.dialogs import DialogGate, OwnRoute, own_route
from services.edge.proxy.flows import is_from_flow
from services.edge.proxy.forwarding import (
    Branch,
    Forwarding,
    best_response,
    failover_allowed,
    next_group,
)
from services.edge.proxy.routes import Hop, NumberRouter, dialled_number
from services.edge.proxy.subscribers import (
    Subscribers,
    authenticate,
    binding_hops,
    challenge_register,
)
from shared.contracts.edge import DestinationFailed, FailureReason, GatewayFailed
from shared.protection import WrongCredentialsError
from shared.sip.address import Address
from shared.sip.branch import new_tag
from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import error_response, make_response
from shared.sip.timers import TimerQueue, TimerSettings
from shared.sip.transaction import (
    AckReceived,
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionTable,
    Transmit,
    TransportFailed,
)
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import (
    Destination,
    destination_of,
    response_destination,
    unbracket,
)
from shared.sip.uri import SipUri

if TYPE_CHECKING:
    from services.edge.policy import EdgePolicies, PolicyContext

log = logging.getLogger("callmesh.edge")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, SUBSCRIBE, NOTIFY, MESSAGE"
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
NO_ROUTE_REASON = 'SIP;cause=404;text="no route"'
DEFAULT_UDP_MTU = 1300
"""RFC 3261 §18.1.1's size for a path MTU not known."""


@dataclass(frozen=True, slots=True)
class ProxyTimers:
    """The failover timers: `fr` without any answer, `fr_inv` after a provisional (Timer C)."""

    fr: float = 5.0
    fr_inv: float = 60.0
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def transaction_settings(self) -> TimerSettings:
        return TimerSettings(t1=self.t1, t2=self.t2, t4=self.t4, timer_c=self.fr_inv)


@dataclass(slots=True)
class Parked:
    """An out-of-dialog request between its preliminaries and its routing (which may wait)."""

    request: Request
    server: ServerTransaction
    source: Destination
    inbound: Interface
    loop_hash: str
    policy: PolicyContext | None = None
    authenticated: bool = False


class Proxy:
    """One worker's proxy: feed it messages and time, carry out the actions it returns."""

    def __init__(
        self, interfaces: Interfaces, router: NumberRouter, timers: ProxyTimers | None = None,
        policies: EdgePolicies | None = None, *, subscribers: Subscribers | None = None,
        calls: ActiveCalls | None = None, shedder: LoadShedder | None = None,
        udp_mtu: int = DEFAULT_UDP_MTU,
        dialogs: DialogGate | None = None,
    ) -> None:  # fmt: skip
        self.udp_mtu = udp_mtu
        """Requests larger than this go by TCP where they may (RFC 3261 §18.1.1; 0: never)."""
        self.policies = policies
        self.shedder = shedder
        """Refuses new calls (503) while the adapter sees the loop lag (None: never)."""
        """Issue 8: protection, topology hiding, routing hook, manipulation (None: all off)."""
        self.interfaces = interfaces
        self.router = router
        self.timers = timers or ProxyTimers()
        self.subscribers = subscribers
        self.dialogs = DialogGate.closed() if dialogs is None else dialogs
        """Issue 13: who may follow a route set (signed Record-Route, trusted sources)."""
        self._parked: dict[ServerTransaction, Parked] = {}
        self.calls = ActiveCalls() if calls is None else calls
        """Calls per dispatcher destination: the same object the router's sets read."""
        self.table = TransactionTable(self.timers.transaction_settings())
        self._fr_timers: TimerQueue[Branch] = TimerQueue()
        self._branches: dict[ClientTransaction, Branch] = {}
        self._forwardings: dict[ServerTransaction, Forwarding] = {}
        self._restored: dict[ServerTransaction, PolicyContext] = {}
        """Issue 8: a hidden dialog's requests from its outside; our own answers go back hidden."""
        self._branch_maker = BranchMaker()
        self._to_tag = new_tag()

    # ----- inputs ----------------------------------------------------------------------

    def receive(
        self, data: bytes, source: Destination, listener: Listener, now: float
    ) -> list[Action]:
        """One message from the network."""
        actions: list[Action] = []
        if self.policies is not None and self.policies.drop_flood(data, source, now, actions):
            return actions
        try:
            message = parse_message(data, stream=source.reliable)
        except SipError as error:
            self._reject_unparsed(data, error, source, actions)
            return actions
        try:
            if isinstance(message, Response):
                self._response(message, now, actions)
            else:
                metrics.count_request(message.method)
                self._request(message, source, listener, now, actions)
        except SipError as error:
            # A header the matching needs turned out malformed, or a next hop is unusable.
            if isinstance(message, Request) and message.method != "ACK":
                self._reject_unparsed(data, error, source, actions)
            else:
                log.info("dropped %s from %s: %s", _what(message), source.host, error.reason)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.table.next_deadline(), self._fr_timers.next_deadline()) if d]
        return min(deadlines) if deadlines else None

    def expire(self, now: float) -> list[Action]:
        """Fire the transaction timers and the failover timers due at `now`."""
        actions: list[Action] = []
        for transaction, event in self.table.expire(now):
            self._transaction_event(transaction, event, now, actions)
        for branch in self._fr_timers.pop_due(now):
            branch.timer = None
            if not branch.answered and not branch.abandoned:
                self._give_up(branch, "timeout", now, actions)
        return actions

    def registered(
        self, server: ServerTransaction, reply: bytes | None, now: float
    ) -> list[Action]:
        """The registrar's response to a `Register` (None: it did not answer in time)."""
        actions: list[Action] = []
        response = None
        if reply is not None:
            try:
                parsed = parse_message(reply)
                response = parsed if isinstance(parsed, Response) else None
            except SipError as error:
                log.warning("unusable registrar reply: %s", error.reason)
        if response is None:
            self._answer(server, 500, "Server Internal Error (registrar)", now, actions)
        else:
            self._respond(server, response, now, actions)
        return actions

    def resume(
        self, server: ServerTransaction, now: float, *, failed: bool = False
    ) -> list[Action]:
        """A `Lookup` is done (`failed`: the store could not answer): route the request again."""
        actions: list[Action] = []
        parked = self._parked.pop(server, None)
        if parked is None:
            return actions  # cancelled meanwhile
        if failed:
            self._answer(server, 500, "Server Internal Error (location)", now, actions)
        else:
            self._proceed(parked, now, actions)
        return actions

    def refuse(self, server: ServerTransaction, now: float) -> list[Action]:
        """An `AuthFailed` was counted (and its delay waited): answer its 403."""
        actions: list[Action] = []
        if self._parked.pop(server, None) is not None:  # else cancelled meanwhile
            self._answer(server, 403, "Forbidden", now, actions)
        return actions

    def transport_failed(self, client: ClientTransaction, now: float) -> list[Action]:
        """A message of `client` could not be sent (connect refused, no route to host)."""
        actions: list[Action] = []
        for event in client.transport_error():
            self._transaction_event(client, event, now, actions)
        return actions

    # ----- requests --------------------------------------------------------------------

    def _request(
        self, request: Request, source: Destination, listener: Listener, now: float,
        actions: list[Action],
    ) -> None:  # fmt: skip
        method = request.method
        # Stamped first: an RFC 2543 transaction key holds the whole top Via, and a
        # retransmission or ACK must find the transaction its stamped original made.
        self._stamp_via(request, source)
        server = self.table.match_request(request)
        if server is not None:
            for event in server.receive_request(request, now):
                self._transaction_event(server, event, now, actions)
            return
        # --- issue 8: restore a hidden dialog's request, screen scanners ---
        policy: PolicyContext | None = None
        if self.policies is not None:
            policy = self.policies.inbound(request)
            if self.policies.screen(request, source, now, actions, policy):
                return
        # ---
        own = own_route(request, self.interfaces.is_ours)
        refusal = self.dialogs.refusal(request, own, source)
        if refusal is not None:
            if method == "ACK":
                return
            raise refusal  # answered statelessly from the bytes as received (`receive`)
        if method == "ACK":
            self._forward_in_dialog_ack(request, source, own, actions, policy)
            return
        request.validate()  # a SipError is answered from the bytes as received (`receive`)
        destination = response_destination(request.top_via, source.address, source.connection_id)
        server = self.table.create_server(request, destination)
        if policy is not None and policy.restored:  # issue 8
            self._restored[server] = policy
        if method == "CANCEL":
            self._cancel(request, server, now, actions)
            return
        try:
            self._route_new(
                request, server, source, listener, own, now=now, actions=actions, policy=policy
            )
        except SipError as error:
            self._answer(server, error.status, error.reason, now, actions, headers=error.headers)

    def _route_new(
        self, request: Request, server: ServerTransaction, source: Destination,
        listener: Listener, own: OwnRoute, *, now: float, actions: list[Action],
        policy: PolicyContext | None = None,
    ) -> None:  # fmt: skip
        if request.method == "OPTIONS" and self._for_us(request):
            headers = (("Allow", ALLOW), ("Supported", ""), ("Accept", "application/sdp"))
            self._answer(server, 200, None, now, actions, headers=headers)
            return
        if self.shedder is not None and self.shedder.shedding and _new_call(request):
            self.shedder.refused += 1
            retry = (("Retry-After", self.shedder.retry_after),)
            self._answer(server, 503, "Service Unavailable (overloaded)", now, actions,
                         headers=retry)  # fmt: skip
            return
        check_proxy_request(request)
        hash_now = loop_hash(request)
        self._check_loop(request, hash_now)
        if request.method == "INVITE":
            self._respond(server, self._local(server, make_response(request, 100)), now, actions)
        token = self._process_routes(request, own)
        inbound = self.interfaces.inbound(listener.transport, listener.host, listener.port)
        in_dialog = request.to_tag is not None
        flow = self._flow_hop(request, token, source)
        if flow is not None or in_dialog:
            if request.method == "BYE":  # past the dialog check: not a forged one
                self.calls.call_ended(request.call_id)
                if self.policies is not None:
                    self.policies.call_ended(request.call_id)
            hop = flow or self._next_hop_by_route(request)
            if hop is None:
                raise SipError("no dialog route to follow", 481)
            record = not in_dialog and request.method in DIALOG_CREATING
            forwarding = Forwarding(server, request, [hop], hash_now, inbound, record)
            forwarding.policy = policy
            self._start(forwarding, now, actions)
            return
        self._proceed(Parked(request, server, source, inbound, hash_now, policy), now, actions)

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
        except WrongCredentialsError as failed:
            self._parked[parked.server] = parked
            actions.append(
                AuthFailed(parked.server, parked.source, failed.user, failed.realm, request.method)
            )
            return
        except SipError as error:
            self._answer(parked.server, error.status, error.reason, now, actions,
                         headers=error.headers)  # fmt: skip
            return
        record = request.method in DIALOG_CREATING
        forwarding = Forwarding(
            parked.server, request, hops, parked.loop_hash, parked.inbound, record
        )
        forwarding.policy = parked.policy
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
        edge_address = parked.inbound.record_route[1:-1].replace(";lr", "")
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
            hops = self._subscriber_hops(uri, subscribers, now)
            if hops is not None:
                return hops
        number = dialled_number(uri)
        if number is None:
            reason = "Not Found" if subscribers else "Not Found (registrar not available)"
            raise SipError(reason, 404)
        if self.policies is not None:  # issue 8: call limits
            parked.policy = self.policies.admit_call(request, source, now)
        found = self.router.hops(number, source, request)
        if self.policies is not None:  # issue 8: the routing hook
            found = self.policies.decide(request, source, number, found)
        if found is None:
            raise SipError(
                f"Not Found (no route for {number})", 404, (("Reason", NO_ROUTE_REASON),)
            )
        hops, skipped = found
        if not hops:
            raise SipError(f"Temporarily Unavailable ({skipped} gateways down)", 480)
        return hops

    def _subscriber_hops(
        self, uri: SipUri, subscribers: Subscribers, now: float
    ) -> list[Hop] | None:
        """The hops to `uri`'s bindings; 480 without any; None when it is no subscriber."""
        directory = subscribers.directory
        user, domain = str(uri.user), uri.host.lower()
        bindings = directory.bindings(f"sip:{user}@{domain}", now)
        if bindings:
            hops = binding_hops(bindings, subscribers.flows, self.interfaces)
            if hops:
                return hops
        elif not directory.subscriber_exists(user, domain, now):
            return None
        raise SipError("Temporarily Unavailable", 480)

    def _flow_hop(self, request: Request, token: str | None, source: Destination) -> Hop | None:
        """The hop to the flow named by a token in our Route, unless it came from that flow."""
        if token is None or self.subscribers is None:
            return None
        flow = self.subscribers.flows.open(token)
        if flow is None:
            raise SipError("Forbidden (bad flow token)", 403)
        if is_from_flow(flow, source):
            return None
        return Hop(request.uri_text, flow, flow_token=token)

    def _for_us(self, request: Request) -> bool:
        """Addressed to the edge itself: our host:port, and no user (or no hop left to go)."""
        uri = request.uri
        return (
            isinstance(uri, SipUri)
            and (uri.user is None or request.max_forwards == 0)
            and self.interfaces.is_ours(uri.host, uri.port, _transport_of(uri))
            and all(self._is_our_route(route) for route in request.routes)
        )

    def _check_loop(self, request: Request, hash_now: str) -> None:
        """482 if one of our Vias carries the hash this request has now (§16.3 step 4)."""
        for via in request.vias:
            seen = hash_in_branch(via.branch)
            if seen == hash_now and self.interfaces.is_ours(via.host, via.port, via.transport):
                raise SipError("Loop Detected", 482)

    def _is_our_route(self, route: Address) -> bool:
        uri = route.uri
        if not isinstance(uri, SipUri):
            return False
        return self.interfaces.is_ours(uri.host, uri.port, _transport_of(uri))

    def _process_routes(self, request: Request, own: OwnRoute) -> str | None:
        """Strict-router fix-up, then pop our own Route entries (§16.4); their flow token."""
        if own.strict:  # a strict router put our Record-Route URI into the Request-URI
            values = request.headers("route")
            request.set_uri(str(request.routes[-1].uri))
            request.remove_header("route")
            if len(values) > 1:
                request.add_header("Route", ", ".join(values[:-1]))
        for _ in range(own.count):
            request.pop_route()
        return own.flow

    def _next_hop_by_route(self, request: Request) -> Hop | None:
        """Loose routing to the top Route; strict-route compatibility for one without `lr`."""
        routes = request.routes
        if not routes:
            uri = request.uri
            if isinstance(uri, SipUri) and self.interfaces.is_ours(
                uri.host, uri.port, _transport_of(uri)
            ):
                return None
            return Hop(request.uri_text, destination_of(uri))
        top = routes[0].uri
        if isinstance(top, SipUri) and not top.has_param("lr"):
            # §16.6 step 6: the next hop is a strict router; it expects the Request-URI.
            request.add_header("Route", f"<{request.uri_text}>")
            request.pop_route()
            request.set_uri(str(top))
            return Hop(request.uri_text, destination_of(top))
        return Hop(request.uri_text, destination_of(top))

    def _stamp_via(self, request: Request, source: Destination) -> None:
        """RFC 3261 §18.2.1 / RFC 3581: note where the request really came from."""
        via = request.top_via
        if via.wants_rport:
            request.replace_top_via(via.with_params(received=source.host, rport=str(source.port)))
        elif unbracket(via.host) != source.host:
            request.replace_top_via(via.with_params(received=source.host))

    # ----- forwarding ------------------------------------------------------------------

    def _start(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        forwarding.request.decrement_max_forwards()
        self._forwardings[forwarding.server] = forwarding
        self._next_branch(forwarding, now, actions)

    def _next_branch(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        """Send to the next hop(s), or answer with the best response when there is none left."""
        if forwarding.hops and not forwarding.cancelled:
            if forwarding.finals:
                metrics.FAILOVERS.inc()
            for hop in next_group(forwarding.hops):
                self._send_branch(forwarding, hop, now, actions)
            if not forwarding.branches:  # none could leave (issue 8): the next group
                self._next_branch(forwarding, now, actions)
            return
        self._finish(forwarding, now, actions)

    def _send_branch(
        self, forwarding: Forwarding, hop: Hop, now: float, actions: list[Action]
    ) -> None:
        request = forwarding.request.copy()
        if hop.uri != request.uri_text:
            request.set_uri(hop.uri)
        routes = hop.routes
        if hop.remote_flow is not None:  # another edge's flow: signed for this call
            signed = self.dialogs.route_params(request.call_id, hop.remote_flow)
            routes = (f"{routes[0][:-1]}{signed}>",)
        for route in routes:
            request.add_header("Route", route)
        outbound = self.interfaces.outbound(hop.destination.transport, hop.destination.host)
        if forwarding.record_route:  # signed, so the dialog's requests may follow it back
            params = self.dialogs.route_params(request.call_id, hop.flow_token)
            if outbound != forwarding.inbound:
                request.add_record_route(f"{forwarding.inbound.record_route[:-1]}{params}>")
            request.add_record_route(f"{outbound.record_route[:-1]}{params}>")
        request.prepend_via(outbound.via_prefix + self._branch_maker.new(forwarding.loop_hash))
        if self.policies is not None:  # issue 8: manipulation, topology hiding
            try:
                self.policies.outgoing(request, forwarding.policy, hop, outbound)
            except SipError as error:  # this hop cannot be served as the table asks
                forwarding.finals.append(self._branch_failure(
                    forwarding, request, error.status, error.reason, error.headers
                ))  # fmt: skip
                return
        if self._too_large_for_udp(request, hop):  # built again, with our TCP Via (§18.1.1)
            tcp = replace(hop.destination, transport="tcp")
            sized = replace(hop, destination=tcp, udp_fallback=hop.destination)
            self._send_branch(forwarding, sized, now, actions)
            return
        client, events = self.table.start_client(
            request, hop.destination, now, proxy=request.method == "INVITE"
        )
        branch = Branch(forwarding, hop, client)
        forwarding.branches.append(branch)
        self._branches[client] = branch
        branch.timer = self._fr_timers.schedule(now + self.timers.fr, branch)
        if hop.gateway_id is not None:
            metrics.count_gateway_attempt(hop.gateway_id)
        elif hop.set_id is not None:
            self.calls.branch_sent(hop.set_id, hop.set_uri, request.method, request.call_id, now)
        for event in events:
            self._transaction_event(client, event, now, actions)

    def _too_large_for_udp(self, request: Request, hop: Hop) -> bool:
        """RFC 3261 §18.1.1: a request over the MTU goes by TCP, unless its next hop's URI
        names UDP, it goes down a flow (a peer reachable only where it connected from), or
        this edge has no TCP socket of the hop's address family.  The size costs nothing:
        the transaction serialises the same bytes next."""
        destination = hop.destination
        return (
            destination.transport == "udp"
            and 0 < self.udp_mtu < len(request.to_bytes())
            and not destination.pinned
            and hop.flow_token is None
            and self.interfaces.outbound("tcp", destination.host).transport == "tcp"
        )

    def _retry_over_udp(self, branch: Branch, now: float, actions: list[Action]) -> bool:
        """§18.1.1: TCP was chosen for the size alone and failed: the hop again over UDP."""
        forwarding = branch.forwarding
        fallback = branch.hop.udp_fallback
        if fallback is None or branch.abandoned or forwarding.done or forwarding.cancelled:
            return False
        _settle(forwarding, branch)
        branch.abandoned = True
        udp = replace(fallback, pinned=True)
        self._send_branch(forwarding, replace(branch.hop, destination=udp, udp_fallback=None),
                          now, actions)  # fmt: skip
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)
        return True

    def _forward_in_dialog_ack(
        self, request: Request, source: Destination, own: OwnRoute, actions: list[Action],
        policy: PolicyContext | None = None,
    ) -> None:  # fmt: skip
        """ACK for a 2xx: its own end-to-end transaction, forwarded statelessly (§16.11)."""
        if request.max_forwards == 0:
            return
        token = self._process_routes(request, own)
        hop = self._flow_hop(request, token, source) or self._next_hop_by_route(request)
        if hop is None:
            return
        request.decrement_max_forwards()
        outbound = self.interfaces.outbound(hop.destination.transport, hop.destination.host)
        request.prepend_via(outbound.via_prefix + self._branch_maker.new(NO_LOOP_HASH))
        if self.policies is not None and policy is not None:  # issue 8: topology hiding
            self.policies.outgoing(request, policy, hop, outbound)
        actions.append(Send(request.to_bytes(), hop.destination))

    # ----- responses -------------------------------------------------------------------

    def _response(self, response: Response, now: float, actions: list[Action]) -> None:
        if self.policies is not None and not self.policies.restore_response(response):
            return  # issue 8: a hidden request's response with a bad token
        client = self.table.match_response(response)
        if client is not None:
            for event in client.receive_response(response, now):
                self._transaction_event(client, event, now, actions)
            return
        # No transaction (a 2xx retransmission after it ended, or from before a restart):
        # forward statelessly if the top Via is ours (§16.7 applied without state).
        via = response.top_via
        if not self.interfaces.is_ours(via.host, via.port, via.transport.lower()):
            return
        popped = response.pop_via()
        if response.header("via") is None:
            return
        destination = response_destination(response.top_via)
        if self.policies is not None:  # issue 8: topology hiding
            outbound = self.interfaces.outbound(destination.transport, destination.host)
            self.policies.upstream(response, popped, outbound)
        actions.append(Send(response.to_bytes(), destination))

    def _branch_response(
        self, branch: Branch, response: Response, now: float, actions: list[Action],
        *, local: FailureReason | None = None,
    ) -> None:  # fmt: skip
        """A response on `branch`; `local` names why, when we made it ourselves."""
        forwarding = branch.forwarding
        status = response.status
        if local is None:
            branch.answered = True
            self._disarm(branch)
        if status < 200:
            if status == 100:
                return
            branch.provisional = True
            if forwarding.cancelled or forwarding.declined or branch.abandoned:
                self._send_cancel(branch, now, actions)
            elif not forwarding.done:
                self._relay(forwarding, response, now, actions)
            return
        if 200 <= status < 300:
            # Every 2xx goes upstream, even on a given-up branch (§16.7 step 5).
            if forwarding.method == "INVITE" and not forwarding.done:
                metrics.CALLS_SET_UP.inc()
            forwarding.done = True
            self._relay(forwarding, response, now, actions)
            self._abandon_others(forwarding, branch, now, actions)  # §16.7 step 10
            return
        if branch.abandoned or forwarding.done:
            return
        _settle(forwarding, branch)
        self._note_failure(branch, response, local, actions)
        forwarding.finals.append(response)
        if status >= 600:
            forwarding.hops.clear()
            self._cancel_others(forwarding, now, actions)
        elif branch.hop.q is None and not failover_allowed(status):
            forwarding.hops.clear()
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)

    def _branch_failure(
        self, forwarding: Forwarding, sent: Request, status: int, reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:  # fmt: skip
        """A final answer the edge makes for a branch (timeout, transport error, unservable hop).

        Made from the request as it arrived, not from the branch's copy
        `sent`, which may have left hidden (masked Call-ID, rewritten From):
        the caller must get back its own identities.  `sent`'s top Via (ours)
        goes on top, so it is relayed exactly like a hop's answer.
        """
        response = make_response(
            forwarding.request, status, reason, to_tag=self._to_tag, headers=headers
        )
        response.prepend_via(sent.top_via)
        return response

    def _cancel_others(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        """After a 6xx: CANCEL the pending branches (now, or on their first provisional)
        but keep waiting for their answers; the 6xx is not forwarded at once (§16.7 step 5)."""
        forwarding.declined = True
        for other in forwarding.branches:
            if other.provisional:
                self._send_cancel(other, now, actions)

    def _abandon_others(
        self, forwarding: Forwarding, winner: Branch, now: float, actions: list[Action]
    ) -> None:
        """Give up the other parallel branches: CANCEL them now, or on their first provisional."""
        for other in forwarding.branches:
            if other is not winner:
                other.abandoned = True
                self._disarm(other)
                if other.provisional:
                    self._send_cancel(other, now, actions)
        forwarding.branches.clear()

    def _give_up(
        self, branch: Branch, reason: FailureReason, now: float, actions: list[Action]
    ) -> None:
        """No final answer in time: CANCEL if we may, then treat it as a 408 and move on."""
        branch.abandoned = True
        self._disarm(branch)
        if branch.provisional:
            self._send_cancel(branch, now, actions)
        forwarding = branch.forwarding
        if forwarding.done:
            return
        _settle(forwarding, branch)
        timeout = self._branch_failure(forwarding, branch.client.request, 408)
        self._note_failure(branch, timeout, reason, actions)
        forwarding.finals.append(timeout)
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)

    def _note_failure(
        self, branch: Branch, response: Response, local: FailureReason | None,
        actions: list[Action],
    ) -> None:  # fmt: skip
        hop = branch.hop
        status = response.status
        call_id = branch.forwarding.request.call_id
        if hop.set_id is not None:
            self.calls.branch_failed(hop.set_id, hop.set_uri, call_id)
        if (hop.gateway_id is None and hop.set_id is None) or not (
            status == 408 or 500 <= status < 600
        ):
            return
        if local is None and status == 408:
            return  # the gateway said 408 itself: it is alive
        facts = {
            "reason": local or "status",
            "status": status,
            "retry_after": _leading_int(response.header("retry-after")),
            "method": branch.forwarding.method,
            "call_id": call_id,
        }
        event: GatewayFailed | DestinationFailed
        if hop.gateway_id is not None:
            metrics.count_gateway_failure(hop.gateway_id)
            event = GatewayFailed.model_validate(
                {**facts, "gateway_id": hop.gateway_id, "address": hop.gateway_address}
            )
        else:
            DESTINATION_FAILURES.labels(hop.set_id, hop.set_uri).inc()
            event = DestinationFailed.model_validate(
                {**facts, "set_id": hop.set_id, "address": hop.set_uri}
            )
        actions.append(Publish(event))

    def _finish(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        if forwarding.done:
            return
        best = best_response(forwarding.finals)
        if forwarding.cancelled and (best is None or best.status != 487):
            self._answer(forwarding.server, 487, None, now, actions)
            forwarding.done = True
            return
        if best is None:
            self._answer(
                forwarding.server, 480, "Temporarily Unavailable (no gateway)", now, actions
            )
            forwarding.done = True
            return
        if best.status == 503:  # §16.7 step 6: a 503 upstream would make the caller back off us
            self._answer(
                forwarding.server, 500, "Server Internal Error (next hop unavailable)", now, actions
            )
            forwarding.done = True
            return
        forwarding.done = True
        self._relay(forwarding, best, now, actions)

    def _relay(
        self, forwarding: Forwarding, response: Response, now: float, actions: list[Action]
    ) -> None:
        """Forward a branch's response upstream through the server transaction (§16.7 step 9)."""
        upstream = response.copy()
        popped = upstream.pop_via()
        if self.policies is not None:  # issue 8: topology hiding
            self.policies.upstream(upstream, popped, forwarding.inbound)
        self._respond(forwarding.server, upstream, now, actions)

    # ----- CANCEL ----------------------------------------------------------------------

    def _cancel(
        self, cancel: Request, server: ServerTransaction, now: float, actions: list[Action]
    ) -> None:
        invite = self.table.match_cancel(cancel)
        if invite is None:
            self._answer(server, 481, None, now, actions)
            return
        self._answer(server, 200, None, now, actions)
        if self._parked.pop(invite, None) is not None:  # still waiting for a lookup
            self._answer(invite, 487, None, now, actions)
            return
        forwarding = self._forwardings.get(invite)
        if forwarding is None or forwarding.done:
            return
        forwarding.cancelled = True
        forwarding.hops.clear()
        for branch in forwarding.branches:
            if branch.provisional and not branch.abandoned:
                self._send_cancel(branch, now, actions)
        # Before any provisional the CANCEL waits for one (§9.1); the failover
        # timer ends the wait with a 487 if none comes.

    def _send_cancel(self, branch: Branch, now: float, actions: list[Action]) -> None:
        if branch.cancel_sent or branch.client.request.method != "INVITE":
            return
        branch.cancel_sent = True
        cancel = cancel_for(branch.client.request)
        _client, events = self.table.start_client(cancel, branch.client.destination, now)
        for event in events:
            if isinstance(event, Transmit):
                actions.append(Send(event.data, event.destination))

    # ----- transaction events ----------------------------------------------------------

    def _transaction_event(
        self, transaction: object, event: TransactionEvent, now: float, actions: list[Action]
    ) -> None:
        if isinstance(event, Transmit):
            client = transaction if isinstance(transaction, ClientTransaction) else None
            actions.append(Send(event.data, event.destination, client))
            return
        if isinstance(transaction, ServerTransaction):
            if isinstance(event, Terminated):
                self._forwardings.pop(transaction, None)
                self._restored.pop(transaction, None)
            elif isinstance(event, AckReceived):
                log.debug("ACK for a 2xx matched a server transaction; dropped")
            return
        if not isinstance(transaction, ClientTransaction):
            return
        branch = self._branches.get(transaction)
        if branch is None:
            return  # a CANCEL's own client transaction: its 200 needs nothing
        if isinstance(event, ResponseReceived):
            self._branch_response(branch, event.response, now, actions)
        elif isinstance(event, TimedOut):
            if event.response is None:
                self._give_up(branch, "timeout", now, actions)
            elif not branch.abandoned:
                self._branch_response(branch, event.response, now, actions, local="timeout")
        elif isinstance(event, TransportFailed):
            self._disarm(branch)
            if self._retry_over_udp(branch, now, actions):
                return
            failure = self._branch_failure(
                branch.forwarding, transaction.request, 503, "Service Unavailable (transport)"
            )
            self._branch_response(branch, failure, now, actions, local="transport")
        elif isinstance(event, Terminated):
            self._disarm(branch)
            del self._branches[transaction]

    def _disarm(self, branch: Branch) -> None:
        if branch.timer is not None:
            self._fr_timers.cancel(branch.timer)
            branch.timer = None

    # ----- answering -------------------------------------------------------------------

    def _answer(
        self, server: ServerTransaction, status: int, reason: str | None, now: float,
        actions: list[Action], *, headers: Iterable[tuple[str, str]] = (),
    ) -> None:  # fmt: skip
        response = make_response(
            server.request, status, reason, to_tag=self._to_tag, headers=headers
        )
        self._respond(server, self._local(server, response), now, actions)

    def _local(self, server: ServerTransaction, response: Response) -> Response:
        """A response of our own: hidden like a relayed one if `server`'s request was restored.

        It is made from the restored request, so it carries the inside's
        Call-ID and identities; the outside must see what it sent.
        """
        context = self._restored.get(server)
        if context is not None and self.policies is not None:  # issue 8
            destination = server.destination
            outbound = self.interfaces.outbound(destination.transport, destination.host)
            self.policies.hide_answer(response, context, outbound)
        return response

    def _respond(
        self, server: ServerTransaction, response: Response, now: float, actions: list[Action]
    ) -> None:
        metrics.count_response(response.status)
        if self.policies is not None:  # issue 8: a failed call frees its call-limit leases
            self.policies.responded(server.request, response)
        for event in server.respond(response, now):
            self._transaction_event(server, event, now, actions)

    def _reject_unparsed(
        self, data: bytes, error: SipError, source: Destination, actions: list[Action]
    ) -> None:
        """A stateless answer (400, 505, ...) straight back to the sender; responses are dropped."""
        answer = error_response(data, error)
        if answer is None:
            log.info("dropped unanswerable message from %s: %s", source.host, error.reason)
            return
        metrics.count_response(error.status)
        actions.append(Send(answer, source))


def cancel_for(invite: Request) -> Request:
    """The CANCEL for a forwarded INVITE (§9.1): its Request-URI, top Via, Route, dialog fields."""
    headers = [
        ("Via", _header(invite, "via")),
        ("Max-Forwards", "70"),
        ("From", _header(invite, "from")),
        ("To", _header(invite, "to")),
        ("Call-ID", _header(invite, "call-id")),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    routes = invite.headers("route")
    if routes:
        headers.append(("Route", ", ".join(routes)))
    return Request.build("CANCEL", invite.uri_text, headers)


def _settle(forwarding: Forwarding, branch: Branch) -> None:
    """`branch` has its final answer: it no longer holds the forwarding back."""
    if branch in forwarding.branches:
        forwarding.branches.remove(branch)


def _header(request: Request, name: str) -> str:
    value = request.header(name)
    if value is None:
        raise SipError(f"missing {name}")
    return value


def _leading_int(value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.split(";", 1)[0].split("(", 1)[0].strip()
    return int(digits) if digits.isdigit() else None


def _transport_of(uri: SipUri) -> str:
    return (uri.param("transport") or "udp").lower()


def _what(message: Request | Response) -> str:
    return message.method if isinstance(message, Request) else str(message.status)


def _new_call(request: Request) -> bool:
    """An out-of-dialog INVITE: what load shedding refuses (in-dialog traffic keeps flowing)."""
    return request.method == "INVITE" and request.to_tag is None
