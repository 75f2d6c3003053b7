"""ACKs for a 2xx, forwarded statelessly (RFC 3261 §16.11), their next hop by name included.

An ACK for a 2xx is a transaction of its own that is never answered, so the
edge keeps no state for it: Routes processed, Max-Forwards down, our Via on
top, sent.  A next hop given by name is resolved as every other one is (RFC
3263: NAPTR → SRV → A/AAAA, from the DNS cache, `NumberRouter.by_name`);
when the cache lacks a record the ACK waits in `ParkedAcks` (bounded in
number and time) while the adapter asks DNS (`ResolveAck`), then leaves, and
its Via names the transport RFC 3263 chose.

It goes to the name's first target only, with no failover: nothing would
tell the edge that target failed (an ACK gets no response, so no timeout or
503; on UDP not even a transport error).  The first target is the best one
known: failed targets come last for the hold and the health service's down
ones are skipped, as for the INVITE.  If that target is dead, the UAS goes
on retransmitting its 2xx and the caller's next ACK gets the same choice.
OpenSIPS and Kamailio also send such an ACK to the first target their
resolver gives, and move on to the next only when sending fails locally
(OpenSIPS's `forward_request` over `get_next_su`, Kamailio's with
`use_dns_failover`); the edge does not retry an ACK whose send failed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.edge import metrics
from services.edge.proxy.actions import Action, ResolveAck, Send
from services.edge.proxy.branches import stateless_branch
from services.edge.proxy.dialogs import OwnRoute
from services.edge.proxy.next_hop import MAX_DNS_ROUNDS, NextHop
from services.edge.proxy.parked_acks import ParkedAck
from shared.dns import NeedRecords
from shared.sip.message import Request
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext

log = logging.getLogger("callmesh.edge")


class StatelessAcks(NextHop):
    """Forwards a 2xx's ACK; one whose next hop's name is not cached waits for DNS."""

    def ack_resolved(self, ticket: int, now: float) -> list[Action]:
        """A `ResolveAck` is done: the ACK of `ticket` leaves, or asks DNS again."""
        actions: list[Action] = []
        ack = self._parked_acks.take(ticket, now)
        if ack is not None:
            self._ack_to_hop(ack, now, actions)
        return actions

    def _forward_in_dialog_ack(
        self,
        request: Request,
        source: Destination,
        own: OwnRoute,
        actions: list[Action],
        *,
        now: float,
        policy: PolicyContext | None = None,
    ) -> None:
        """ACK for a 2xx: its own end-to-end transaction, forwarded statelessly (§16.11)."""
        if request.max_forwards == 0:
            return
        token = self._process_routes(request, own)
        hop = self._flow_hop(request, token, source) or self._next_hop_by_route(request)
        if hop is None:
            return
        self._ack_to_hop(ParkedAck(request, own, policy, hop, now), now, actions)

    def _ack_to_hop(self, ack: ParkedAck, now: float, actions: list[Action]) -> None:
        """Send `ack` to its hop's first DNS target, or park it while DNS is asked."""
        hop = ack.hop
        if hop.name is not None:
            try:
                targets, _why = self.router.by_name(hop, now)  # an unresolved name is logged
            except NeedRecords as need:
                ack.rounds += 1
                if ack.rounds > MAX_DNS_ROUNDS:
                    log.info("ACK to %s dropped: DNS answers expire faster than they come", hop.uri)
                    metrics.ACKS_DROPPED["deadline"] += 1
                    return
                ticket = self._parked_acks.park(ack, now)
                if ticket is not None:
                    actions.append(ResolveAck(tuple(need.keys), ticket))
                return
            if not targets:
                metrics.ACKS_DROPPED["unresolvable"] += 1
                return
            hop = targets[0]
        request = ack.request
        request.decrement_max_forwards()
        outbound = self.interfaces.outbound(hop.destination.transport, hop.destination.host)
        request.prepend_via(outbound.via_prefix + stateless_branch(request))
        if ack.policy is not None:  # a hidden dialog's ACK: topology hiding
            self.policies.outgoing(request, ack.policy, hop, outbound)
        if (
            self.media is not None
            and ack.own.media
            and self._held_ack(request, ack.own, hop.destination, actions)
        ):
            return  # a late offer's answer: it leaves once rtpengine has rewritten it (`relay`)
        actions.append(Send(request.to_bytes(), hop.destination))
