"""Forwarding and forking (RFC 3261 §16.6, §16.7): branches, failover, the best answer.

A `Forwarding` starts with its hops; each group of them (one gateway, or the
contacts of one q) goes out as branches, each a client transaction with a
failover timer.  Answers come back through `_client_event`: a provisional
is relayed, a 2xx wins and the others are cancelled, a failure that allows
failover moves on to the next group, and when none is left the best final
answer goes upstream.  With call events on, the points where a call's events
happen call `CallRecords` (each branch's final answer, the first ringing, the
answer, the failure sent upstream, the CANCEL, a BYE's outcome); `Cancelling`
(`cancelling`) stops the branches of a cancelled one.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from services.edge import metrics
from services.edge.proxy.actions import Action, Send
from services.edge.proxy.call_events import RINGING
from services.edge.proxy.cancelling import Cancelling
from services.edge.proxy.contacts import TARGET_METHODS, phones_contact, rewrite_contacts
from services.edge.proxy.flows import join_flows
from services.edge.proxy.forwarding import Branch, Forwarding, failover_allowed
from services.edge.proxy.routes import Hop
from shared.contracts.edge import FailureReason
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    State,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransportFailed,
)

log = logging.getLogger("callmesh.edge")


class Forking(Cancelling):
    """Sends a forwarding's branches and turns their answers into the one sent upstream."""

    def _start(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        forwarding.request.decrement_max_forwards()
        self._forwardings[forwarding.server] = forwarding  # a CANCEL finds it, even held
        if self.media is not None and self._held_for_offer(forwarding, actions):
            return  # its branches go once rtpengine has rewritten its SDP
        self._next_branch(forwarding, now, actions)

    def _held_for_offer(self, forwarding: Forwarding, actions: list[Action]) -> bool:
        """Whether the request waits for rtpengine's offer (`relay.MediaRelaying`; here: no)."""
        return False

    def _expand_name(
        self, forwarding: Forwarding, at: int, now: float, actions: list[Action]
    ) -> bool:
        """Hop `at` by name → its DNS targets; False while DNS is asked (here: the transport's)."""
        forwarding.hops[at] = replace(forwarding.hops[at], name=None)
        return True

    def _take_channel(self, forwarding: Forwarding, actions: list[Action]) -> bool:
        """A failover's channel at a capped gateway; False while asked (here: no limits)."""
        return True

    def _held_for_answer(self, branch: Branch, response: Response, actions: list[Action]) -> bool:
        """Whether a relayed call's response waits for rtpengine's answer (`relay`; here: no)."""
        return False

    def _next_branch(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        """Send to the next hop(s), or answer with the best response when there is none left."""
        while (at := forwarding.named_hop()) is not None and not forwarding.cancelled:
            if not self._expand_name(forwarding, at, now, actions):
                return  # waits for DNS (`resume` comes back here)
        if forwarding.hops and not forwarding.cancelled:
            if forwarding.finals and not self._take_channel(forwarding, actions):
                return  # waits for the shared limits (`limited` comes back here)
            if forwarding.finals:
                metrics.FAILOVERS.value += 1
            for hop in forwarding.next_group():
                self._send_branch(forwarding, hop, now, actions)
            if not forwarding.branches:  # none could leave (a policy refused each): next group
                self._next_branch(forwarding, now, actions)
            return
        self._finish(forwarding, now, actions)

    def _send_branch(
        self, forwarding: Forwarding, hop: Hop, now: float, actions: list[Action]
    ) -> None:
        request = forwarding.request.copy()
        if hop.uri != request.uri_text:
            request.set_uri(hop.uri)
        offered = forwarding.offered  # rtpengine's SDP toward a relayed hop, or a late offer's
        relayed = hop.relay and (offered is not None or forwarding.late)  # to come (`relay`)
        late = relayed and offered is None
        if relayed and offered is not None:
            request.set_body(offered)
        routes = hop.routes
        if hop.remote_flow is not None:  # another edge's flow: signed for this call
            signed = self.dialogs.route_params(request.call_id, hop.remote_flow)
            routes = (f"{routes[0][:-1]}{signed}>",)
        for route in routes:
            request.add_header("Route", route)
        outbound = self.interfaces.outbound(hop.destination.transport, hop.destination.host)
        if forwarding.record_route:  # signed, so the dialog's requests may follow it back
            flows = join_flows(hop.flow_token, forwarding.caller_flow)
            params = self.dialogs.route_params(request.call_id, flows, relayed, late)
            if routes:
                top: str | None = routes[0]
            else:  # asked first: a missing header's look-up raises inside (~4,000 instructions)
                top = request.header("route") if request.has_header("route") else None
            if request.uri_text[:5].lower() == "sips:" or (top or "")[:6].lower() == "<sips:":
                inside, outside = (
                    forwarding.inbound.secure_record_route,
                    outbound.secure_record_route,
                )
            else:
                inside, outside = forwarding.inbound.record_route, outbound.record_route
            # `is not` first: the dataclass's generated `__eq__` runs as Python even compiled
            if outbound is not forwarding.inbound and outbound != forwarding.inbound:
                request.add_record_route(f"{inside[:-1]}{params}>")
            request.add_record_route(f"{outside[:-1]}{params}>")
        if forwarding.caller_flow is not None and phones_contact(request):
            media = relayed or (hop.relay and request.to_tag is not None)  # a relayed dialog's
            rewrite_contacts(request, outbound, forwarding.caller_flow, self.dialogs, media)  # NAT
        via_branch = self._branch_maker.forwarded(
            forwarding.loop_hash, forwarding.request, request.uri_text, hop.destination
        )
        if self.table.has_client(via_branch, request.method):  # one target twice: a failover
            via_branch = self._branch_maker.new(forwarding.loop_hash)
        request.prepend_via(*outbound.via(via_branch))
        try:  # manipulation, topology hiding
            self.policies.outgoing(request, forwarding.policy, hop, outbound)
        except SipError as error:  # this hop cannot be served as the table asks
            failure = forwarding.failure(
                request, error.status, self._to_tag, error.reason, error.headers
            )
            forwarding.finals.append(failure)
            return
        if self._too_large_for_udp(request, hop):  # built again, with our TCP Via (§18.1.1)
            tcp = replace(hop.destination, transport="tcp")
            sized = replace(hop, destination=tcp, udp_fallback=hop.destination)
            self._send_branch(forwarding, sized, now, actions)
            return
        client, events = self.table.start_client(
            request, hop.destination, now, proxy=request.method == "INVITE"
        )
        branch = Branch(forwarding, hop, client, sent_at=now)
        forwarding.branches.append(branch)
        self._branches[client] = branch
        branch.timer = self._fr_timers.schedule(now, self.timers.fr, branch)
        if hop.gateway_id is not None:
            metrics.GATEWAY_ATTEMPTS[hop.gateway_id] += 1
        elif hop.set_id is not None:
            self.calls.branch_sent(hop.set_id, hop.set_uri, request.method, request.call_id, now)
        for event in events:
            self._client_event(client, event, now, actions)

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
        forwarding.settle(branch)
        branch.abandoned = True
        udp = replace(fallback, pinned=True)
        retry = replace(branch.hop, destination=udp, udp_fallback=None)
        self._send_branch(forwarding, retry, now, actions)
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)
        return True

    # ----- answers on the branches -----------------------------------------------------

    def _client_event(
        self, client: ClientTransaction, event: TransactionEvent, now: float, actions: list[Action]
    ) -> None:
        if isinstance(event, Send):
            actions.append(event)  # the transaction named itself as the one to tell of a failure
            return
        branch = self._branches.get(client)
        if branch is None:  # a CANCEL's own client, or a branch ended: nothing to relay
            if client.answered:
                client.hold_request_as_bytes()
            return
        if isinstance(event, ResponseReceived):
            self._branch_response(branch, event.response, now, actions)
            if client.state is State.COMPLETED:  # it only absorbs retransmissions now
                self._branches.pop(client, None)
            self._hold_answered(branch)
        elif isinstance(event, TimedOut):
            if event.response is None:
                self._give_up(branch, "timeout", now, actions)
            elif not branch.abandoned:
                self._branch_response(branch, event.response, now, actions, local="timeout")
        elif isinstance(event, TransportFailed):
            branch.disarm(self._fr_timers)
            if self._retry_over_udp(branch, now, actions):
                return
            failure = branch.forwarding.failure(
                client.request, 503, self._to_tag, "Service Unavailable (transport)"
            )
            self._branch_response(branch, failure, now, actions, local="transport")
        elif isinstance(event, Terminated):
            branch.disarm(self._fr_timers)
            self._branches.pop(client, None)

    def _hold_answered(self, branch: Branch) -> None:
        """The branch's request as its bytes once its final response was read, unless a
        response of it waits at rtpengine: relayed later (`MediaRelaying._answered`), it
        reads the request again (its own Via popped against it, the callee's leg)."""
        client = branch.client
        if client.answered and branch.queued is None:
            client.hold_request_as_bytes()

    def _branch_response(
        self,
        branch: Branch,
        response: Response,
        now: float,
        actions: list[Action],
        *,
        local: FailureReason | None = None,
    ) -> None:
        """A response on `branch`; `local` names why, when we made it ourselves."""
        forwarding = branch.forwarding
        if (
            (forwarding.offered is not None or forwarding.late)
            and local is None
            and self._held_for_answer(branch, response, actions)
        ):
            return  # `media_done` brings it back with rtpengine's SDP
        status = response.status
        if local is None:
            branch.answered = True
            branch.disarm(self._fr_timers)
            flow = branch.hop.flow_token
            if flow is not None and 100 < status < 300 and forwarding.method in TARGET_METHODS:
                relaying = forwarding.offered is not None or forwarding.late  # taken, or late
                media = branch.hop.relay and (relaying or forwarding.request.to_tag is not None)
                rewrite_contacts(response, forwarding.inbound, flow, self.dialogs, media)  # NAT
        if status < 200:
            if status == 100:
                return
            branch.provisional = True
            if forwarding.cancelled or forwarding.declined or branch.abandoned:
                self._send_cancel(branch, now, actions)
            elif not forwarding.done:
                self._relay(forwarding, response, now, actions, branch.client.request)
                if forwarding.call is not None and status in RINGING:
                    self._publish_ringing(forwarding, status, now, actions)
            return
        if 200 <= status < 300:
            # Every 2xx goes upstream, even on a given-up branch (§16.7 step 5).
            first = not forwarding.done
            if forwarding.method == "INVITE" and first:
                metrics.CALLS_SET_UP.value += 1
            self._done(forwarding)
            self._relay(forwarding, response, now, actions, branch.client.parsed_request)
            if forwarding.call is not None or forwarding.ending is not None:
                self._publish_success(branch, response, first, now, actions)
            self._abandon_others(forwarding, branch, now, actions)  # §16.7 step 10
            # Kept for 2xx retransmissions only: the forwarding's request (its server
            # transaction's) as its bytes; the branch's once read (`_hold_answered`).
            forwarding.server.hold_request_as_bytes()
            return
        if forwarding.call is not None:
            self._publish_branch(branch, status, response.reason, now, actions)
        if branch.abandoned or forwarding.done:
            return
        forwarding.settle(branch)
        self._note_failure(branch, response, local, now, actions)
        forwarding.finals.append(response)
        if status >= 600:
            forwarding.hops.clear()
            self._cancel_others(forwarding, now, actions)
        elif branch.hop.q is None and not failover_allowed(status):
            forwarding.hops.clear()
        elif branch.hop.routed_by_name and local is None and status != 503:
            forwarding.hops.clear()  # a Route's name: only no answer or a 503 moves on
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)

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
                other.disarm(self._fr_timers)
                if other.provisional:
                    self._send_cancel(other, now, actions)
        forwarding.branches.clear()

    def _give_up(
        self, branch: Branch, reason: FailureReason, now: float, actions: list[Action]
    ) -> None:
        """No final answer in time: CANCEL if we may, then treat it as a 408 and move on."""
        branch.abandoned = True
        branch.disarm(self._fr_timers)
        if branch.provisional:
            self._send_cancel(branch, now, actions)
        forwarding = branch.forwarding
        if forwarding.call is not None:
            self._publish_branch(branch, 408, "Request Timeout", now, actions)
        if forwarding.done:
            return
        forwarding.settle(branch)
        timeout = forwarding.failure(branch.client.request, 408, self._to_tag)
        self._note_failure(branch, timeout, reason, now, actions)
        forwarding.finals.append(timeout)
        if not forwarding.branches:
            self._next_branch(forwarding, now, actions)

    def _finish(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        if forwarding.done:
            return
        best = forwarding.best_response()
        self._done(forwarding)
        if forwarding.cancelled and (best is None or best.status != 487):
            sent = self._answer(forwarding.server, 487, None, now, actions)
        elif best is None:
            reason = f"Temporarily Unavailable ({forwarding.unresolved or 'no gateway'})"
            sent = self._answer(forwarding.server, 480, reason, now, actions)
        elif best.status == 503:  # §16.7 step 6: a 503 upstream would make the caller back off
            reason = "Server Internal Error (next hop unavailable)"
            sent = self._answer(forwarding.server, 500, reason, now, actions)
        else:
            self._relay(forwarding, best, now, actions)
            sent = best
        if forwarding.call is not None or forwarding.ending is not None:
            self._publish_final(forwarding, sent, best is None, now, actions)

    def _done(self, forwarding: Forwarding) -> None:
        """The final answer is chosen: a CANCEL has nothing left to stop, so the server
        transaction no longer leads to the forwarding (a winning branch still does, for
        the 2xx retransmissions it relays)."""
        forwarding.done = True
        self._forwardings.pop(forwarding.server, None)

    def _relay(
        self,
        forwarding: Forwarding,
        response: Response,
        now: float,
        actions: list[Action],
        sent: Request | None = None,
    ) -> None:
        """Forward a branch's response upstream through the server transaction (§16.7 step 9);
        `sent`: the branch's request, whose Via (ours) it pops unparsed."""
        upstream = response.copy()
        popped = upstream.pop_via(sent)
        if not upstream.has_header("via"):
            # The downstream echoed only our Via (a 487 copied from our CANCEL's, say),
            # not the request's (§8.2.6.2): the caller's Vias are the request's, and
            # without them its ACK would match no transaction here.
            for via in reversed(forwarding.server.request.vias):
                upstream.prepend_via(via)
            log.info(
                "%d from %s carried only our Via: the caller's restored",
                response.status,
                forwarding.server.request.call_id,
            )
        self.policies.upstream(upstream, popped, forwarding.inbound)  # topology hiding
        self._respond(forwarding.server, upstream, now, actions)
