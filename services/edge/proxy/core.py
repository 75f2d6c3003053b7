"""The transaction-stateful proxy of RFC 3261 §16, sans-IO: its inputs, intake and checks.

Bytes, their source and the time go in (`receive`, `expire`, `transport_failed`, and the
outcomes of its round trips: `registered`, `resume`, `ack_resolved`, `refuse`,
`media_done`); `Send`/`Publish`/`Register`/`Lookup`/`Resolve`/`ResolveAck`/`AuthFailed`/
`Media` actions come out. The core holds
the transaction table and, per server transaction, a `Forwarding` (serial failover over
gateways, parallel forking over a subscriber's contacts). It keeps nothing about
dialogs: an in-dialog request is routed from its Route headers alone (a flow token in
one of ours names the connection of a phone behind us), which is what lets a call
outlive an edge restart; and only along a Record-Route the edge signed, unless it comes
from a trusted source (`dialogs`: no open relay).

`Proxy` is the one public entry; its behaviour is layered in a class chain,
one responsibility per module: `answers` (state, own answers, failure
reports) ← `call_records` (the call events) ← `cancelling` (CANCEL) ←
`forking` (branches, failover, the best answer) ← `relay` (media through rtpengine) ←
`next_hop` (by Route, by Request-URI: registrar, subscribers, numbers) ←
`acks` (a 2xx's ACK, forwarded statelessly, waiting for DNS if it must) ←
this module (parsing, stateless refusals, policy screens, the dialog check,
Max-Forwards and loop checks, stateless response forwarding).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from services.edge import metrics
from services.edge.proxy.acks import StatelessAcks
from services.edge.proxy.actions import Action, HandOff, Send
from services.edge.proxy.answers import DEFAULT_UDP_MTU, ProxyTimers
from services.edge.proxy.branches import loop_hash
from services.edge.proxy.contacts import TARGET_METHODS
from services.edge.proxy.dialogs import OwnRoute, own_route
from services.edge.proxy.forwarding import Forwarding, Parked
from services.edge.proxy.next_hop import DIALOG_CREATING
from shared.fraud.rules import FraudVerdict
from shared.limits.model import LimitVerdict
from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response
from shared.sip.transaction import ClientTransaction, ServerTransaction
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import (
    Destination,
    response_destination,
    unbracket,
)

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext

__all__ = ["DEFAULT_UDP_MTU", "Proxy", "ProxyTimers"]

log = logging.getLogger("callmesh.edge")

STORE_AWAY: Final = (("Retry-After", "5"),)
"""On the 503 for a registrar or location store that did not answer: the caller (a phone, or
an upstream proxy that fails over on it) tries again later; the registrar's own 503 says 5 too."""
ALLOW: Final = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, SUBSCRIBE, NOTIFY, MESSAGE"
)


class Proxy(StatelessAcks):
    """One worker's proxy: feed it messages and time, carry out the actions it returns."""

    # ----- inputs ----------------------------------------------------------------------

    def receive(
        self, data: bytes, source: Destination, listener: Listener, now: float
    ) -> list[Action]:
        """One message from the network."""
        actions: list[Action] = []
        if self.policies.drop_flood(data, source, now, actions):
            return actions
        try:
            message = parse_message(data, stream=source.reliable)
        except SipError as error:
            self._reject_unparsed(data, error, source, now, actions)
            return actions
        try:
            calls = self.b2bua_calls
            if calls and message.call_id in calls and self.b2bua_claims(message):  # a pair's
                actions.append(HandOff(data, source))
                return actions
            if isinstance(message, Response):
                self._response(message, source, now, actions)
            else:
                # Counted here, not through a function of `metrics` (interpreted: a Python
                # frame per request from this compiled module).
                method = message.method
                metrics.REQUESTS[method if method in metrics.KNOWN_METHODS else "other"] += 1
                self._request(message, source, listener, now, actions)
        except SipError as error:
            # A header the matching needs turned out malformed, or a next hop is unusable.
            if isinstance(message, Request) and message.method != "ACK":
                self._reject_unparsed(data, error, source, now, actions)
            else:
                self._log_drop(_what(message), source, error.reason, now)
        return actions

    def next_deadline(self) -> float | None:
        """The earlier of the transactions' and the failover timers' next deadline: asked
        after every message (`runtime.driver`), so compared in place, no list and `min`."""
        transactions = self.table.next_deadline()
        failover = self._fr_timers.next_deadline()
        if failover is None or (transactions is not None and transactions <= failover):
            return transactions
        return failover

    def expire(self, now: float) -> list[Action]:
        """Fire the transaction timers and the failover timers due at `now`."""
        actions: list[Action] = []
        for transaction, event in self.table.expire(now):
            if isinstance(transaction, ServerTransaction):
                self._server_event(transaction, event, actions)
            elif isinstance(transaction, ClientTransaction):
                self._client_event(transaction, event, now, actions)
        for _timer, branch in self._fr_timers.pop_due(now):
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
            reason = "Service Unavailable (registrar)"
            self._answer(server, 503, reason, now, actions, headers=STORE_AWAY)
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
            resolving = self._resolving.pop(server, None)
            if resolving is not None:  # a Route's or Request-URI's name, now in the cache
                self._next_branch(resolving, now, actions)
            return actions  # else cancelled meanwhile
        if failed:
            reason = "Service Unavailable (location)"
            answer = self._answer(server, 503, reason, now, actions, headers=STORE_AWAY)
            self._publish_refused(
                parked.request,
                parked.source,
                answer,
                now,
                actions,
                parked=parked,
                cause="unavailable",
            )
        else:
            self._proceed(parked, now, actions)
        return actions

    def limited(
        self, server: ServerTransaction, verdict: LimitVerdict | None, now: float
    ) -> list[Action]:
        """An `Acquire` is done (`verdict` None: the store could not answer): route the call
        again, now under the verdict."""
        actions: list[Action] = []
        parked = self._parked.pop(server, None)
        if parked is not None:  # else cancelled meanwhile, or a failover's channel
            parked.verdict = verdict
            self._proceed(parked, now, actions)
            return actions
        channeling = self._channeling.pop(server, None)
        if channeling is not None:
            forwarding, query = channeling
            if not self.policies.channel_taken(query, verdict, now):  # at its cap: skipped
                forwarding.hops.pop(0)
            self._next_branch(forwarding, now, actions)
        return actions

    def screened(
        self, server: ServerTransaction, verdict: FraudVerdict | None, now: float
    ) -> list[Action]:
        """A `Screen` is done (`verdict` None: the store could not answer): route the call
        again, now under the fraud verdict."""
        actions: list[Action] = []
        parked = self._parked.pop(server, None)
        if parked is not None:  # else cancelled meanwhile
            parked.fraud_verdict = verdict
            self._proceed(parked, now, actions)
        return actions

    def refuse(self, server: ServerTransaction, now: float) -> list[Action]:
        """An `AuthFailed` was counted (and its delay waited): answer its 403."""
        actions: list[Action] = []
        parked = self._parked.pop(server, None)
        if parked is not None:  # else cancelled meanwhile
            answer = self._answer(server, 403, "Forbidden", now, actions)
            self._publish_refused(
                parked.request, parked.source, answer, now, actions, parked=parked
            )
        return actions

    def transport_failed(self, client: ClientTransaction, now: float) -> list[Action]:
        """A message of `client` could not be sent (connect refused, no route to host)."""
        actions: list[Action] = []
        for event in client.transport_error():
            self._client_event(client, event, now, actions)
        return actions

    # ----- requests --------------------------------------------------------------------

    def _request(
        self,
        request: Request,
        source: Destination,
        listener: Listener,
        now: float,
        actions: list[Action],
    ) -> None:
        method = request.method
        # Stamped first: an RFC 2543 transaction key holds the whole top Via, and a
        # retransmission or ACK must find the transaction its stamped original made.
        self._stamp_via(request, source)
        server = self.table.match_request(request)
        if server is not None:
            for event in server.receive_request(request, now):
                self._server_event(server, event, actions)
            return
        # A hidden dialog's request from its outside is restored, then scanners are screened.
        policy = self.policies.inbound(request)
        if self.policies.screen(request, source, now, actions, policy):
            return
        own = own_route(request, self.interfaces.is_ours)
        mark = self.b2bua_tags
        if mark is not None and own.token is None and (request.to_tag or "").startswith(mark):
            actions.append(HandOff(request.to_bytes(), source, adopt=True))  # a pair elsewhere
            return
        refusal = self.dialogs.refusal(request, own, source)
        if refusal is not None:
            if method == "ACK":
                return
            raise refusal  # answered statelessly from the bytes as received (`receive`)
        if method == "ACK":
            self._forward_in_dialog_ack(request, source, own, actions, now=now, policy=policy)
            return
        request.validate_for_proxy()  # a SipError: answered from the received bytes (`receive`)
        destination = response_destination(request.top_via, source.address, source.connection_id)
        server = self.table.create_server(request, destination)
        if policy is not None and policy.restored:  # our own answers must go back hidden
            self._restored[server] = policy
        if method == "CANCEL":
            self._cancel(request, server, now, actions)
            return
        try:
            self._route_new(
                request, server, source, listener, own, now=now, actions=actions, policy=policy
            )
        except SipError as error:
            answer = self._answer(
                server, error.status, error.reason, now, actions, headers=error.headers
            )
            if _new_call(request):  # refused before routing: 482, 483, 420, ...
                self._publish_refused(request, source, answer, now, actions)

    def _route_new(
        self,
        request: Request,
        server: ServerTransaction,
        source: Destination,
        listener: Listener,
        own: OwnRoute,
        *,
        now: float,
        actions: list[Action],
        policy: PolicyContext | None = None,
    ) -> None:
        if request.method == "OPTIONS" and self._for_us(request):
            headers = (("Allow", ALLOW), ("Supported", ""), ("Accept", "application/sdp"))
            self._answer(server, 200, None, now, actions, headers=headers)
            return
        if self.shedder is not None and self.shedder.shedding and _new_call(request):
            self.shedder.refused += 1
            retry = (("Retry-After", self.shedder.retry_after),)
            reason = "Service Unavailable (overloaded)"
            answer = self._answer(server, 503, reason, now, actions, headers=retry)
            self._publish_refused(request, source, answer, now, actions, cause="limit")
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
                self.policies.call_ended(request.call_id)
            hop = flow or self._next_hop_by_route(request)
            if hop is None:
                raise SipError("no dialog route to follow", 481)
            record = not in_dialog and request.method in DIALOG_CREATING
            if self.media is not None:
                hop = self._dialog_media(request, source, hop, own, actions)
            forwarding = Forwarding(server, [hop], hash_now, inbound, record)
            forwarding.policy = policy
            forwarding.late = own.late and request.method == "PRACK"  # its SDP answers (`relay`)
            if record:
                forwarding.caller_flow = self._caller_flow(request, source)
            elif token is not None and request.method in TARGET_METHODS:  # a target refresh
                forwarding.caller_flow = self._sender_flow(token, source)
            if in_dialog and self.call_events is not None:
                self._note_in_dialog(forwarding, self.call_events, now, actions)
            self._start(forwarding, now, actions)
            return
        parked = Parked(request, server, source, inbound, hash_now, policy, seen_at=now)
        self._proceed(parked, now, actions)

    def _response(
        self, response: Response, source: Destination, now: float, actions: list[Action]
    ) -> None:
        if not self.policies.restore_response(response):
            return  # a hidden request's response with a bad topology token
        client = self.table.match_response(response)
        if client is not None:
            for event in client.receive_response(response, now):
                self._client_event(client, event, now, actions)
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
        outbound = self.interfaces.outbound(destination.transport, destination.host)
        self._publish_unmatched_answer(response, source, now, actions)  # as the INVITE's was
        self.policies.upstream(response, popped, outbound)  # topology hiding
        if self.media is not None and self._held_retransmission(response, destination, actions):
            return  # a relayed call's 2xx: rtpengine's SDP again (`relay`)
        actions.append(Send(response.to_bytes(), destination))

    def _stamp_via(self, request: Request, source: Destination) -> None:
        """RFC 3261 §18.2.1 / RFC 3581: note where the request really came from."""
        via = request.top_via
        if via.wants_rport:
            request.stamp_top_via(source.host, source.port)
        elif unbracket(via.host) != source.host:
            request.stamp_top_via(source.host)


def _what(message: Request | Response) -> str:
    return message.method if isinstance(message, Request) else str(message.status)


def _new_call(request: Request) -> bool:
    """An out-of-dialog INVITE: what load shedding refuses (in-dialog traffic keeps flowing)."""
    return request.method == "INVITE" and request.to_tag is None
