"""State of one stateful forwarding: a server transaction, its hops, the branches in flight.

A request the core routes out of dialog waits as `Parked` until its next hops
are known (a location lookup or a failed authentication may hold it there).

Forking (§16.6, §16.7): gateways are tried one at a time, each failure that
allows failover moving on to the next; registered contacts of equal q are
tried in parallel (the first 2xx wins, the others are cancelled) and the next
q goes once they all failed.  The answers collected pick the final response
when the hops run out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.edge.proxy.call_events import CallNotes
from services.edge.proxy.interfaces import Interface
from services.edge.proxy.routes import Hop
from shared.fraud.rules import FraudQuery, FraudVerdict
from shared.limits.model import LimitQuery, LimitVerdict
from shared.sip.message import Request, Response
from shared.sip.responses import make_response
from shared.sip.timers import Timer, TimerQueue
from shared.sip.transaction import ClientTransaction, ServerTransaction, cancel_for
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext


@dataclass(slots=True, init=False)
class Parked:
    """An out-of-dialog request between its preliminaries and its routing (which may wait)."""

    request: Request
    server: ServerTransaction
    source: Destination
    inbound: Interface
    loop_hash: str
    policy: PolicyContext | None
    authenticated: bool
    callee: str | None
    """Who routing found the request is for: the number after the dialplan, or a subscriber's
    AoR (for the call events)."""
    group: str | None
    """The routing group a number was looked up in."""
    peer: str | None
    """The peer the request came from, if any (for the call events)."""
    seen_at: float
    """When it arrived (the core's clock): a call's start, however long it waits here."""
    limits: LimitQuery | None
    """The shared limits asked for it (an `Acquire`), and then their `verdict`."""
    verdict: LimitVerdict | None
    fraud: FraudQuery | None
    """The fraud counts asked about it (a `Screen`), and then their `fraud_verdict`."""
    fraud_verdict: FraudVerdict | None
    dns_rounds: int
    """How often it waited for DNS (`Resolve`)."""

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        request: Request,
        server: ServerTransaction,
        source: Destination,
        inbound: Interface,
        loop_hash: str,
        policy: PolicyContext | None = None,
        authenticated: bool = False,
        callee: str | None = None,
        group: str | None = None,
        peer: str | None = None,
        seen_at: float = 0.0,
        limits: LimitQuery | None = None,
        verdict: LimitVerdict | None = None,
        fraud: FraudQuery | None = None,
        fraud_verdict: FraudVerdict | None = None,
        dns_rounds: int = 0,
    ) -> None:
        self.request = request
        self.server = server
        self.source = source
        self.inbound = inbound
        self.loop_hash = loop_hash
        self.policy = policy
        self.authenticated = authenticated
        self.callee = callee
        self.group = group
        self.peer = peer
        self.seen_at = seen_at
        self.limits = limits
        self.verdict = verdict
        self.fraud = fraud
        self.fraud_verdict = fraud_verdict
        self.dns_rounds = dns_rounds


@dataclass(eq=False, slots=True, init=False)
class Branch:
    """One attempt at one hop."""

    forwarding: Forwarding
    hop: Hop
    client: ClientTransaction
    answered: bool
    """Any response (even 100) came: the hop is alive."""
    provisional: bool
    """A provisional above 100 came: a CANCEL may now be sent (§9.1)."""
    abandoned: bool
    """Given up on (timer or CANCEL); late answers are absorbed."""
    cancel_sent: bool
    timer: Timer | None
    """Its failover timer, in the proxy's queue (a number: no cycle through a handle)."""
    sent_at: float
    """When the request left (the core's clock)."""
    reported: bool
    """Its final answer was published (a `BranchTried`): once per branch."""
    queued: list[Response] | None
    """While one of its responses waits for rtpengine: the ones that came after it, passed on
    in order once it has gone (a 486 never overtakes the 183 ahead of it)."""

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        forwarding: Forwarding,
        hop: Hop,
        client: ClientTransaction,
        answered: bool = False,
        provisional: bool = False,
        abandoned: bool = False,
        cancel_sent: bool = False,
        timer: Timer | None = None,
        sent_at: float = 0.0,
        reported: bool = False,
        queued: list[Response] | None = None,
    ) -> None:
        self.forwarding = forwarding
        self.hop = hop
        self.client = client
        self.answered = answered
        self.provisional = provisional
        self.abandoned = abandoned
        self.cancel_sent = cancel_sent
        self.timer = timer
        self.sent_at = sent_at
        self.reported = reported
        self.queued = queued

    def disarm(self, timers: TimerQueue[Branch]) -> None:
        """Stop this branch's failover timer (it has an answer, or is given up)."""
        if self.timer is not None:
            timers.cancel(self.timer)
            self.timer = None

    def cancel_request(self) -> Request:
        """The CANCEL for this branch's INVITE (§9.1)."""
        return cancel_for(self.client.request)


@dataclass(eq=False, slots=True, init=False)
class Forwarding:
    server: ServerTransaction
    """Its request (`request`) is the forwarding's: no reference of its own, so the server
    transaction alone decides how it is kept (as bytes, once the call is answered)."""
    method: str
    """The request's method, kept: a retransmitted 2xx reads it, and the request itself
    may be held as bytes by then."""
    hops: list[Hop]
    loop_hash: str
    inbound: Interface
    record_route: bool
    branches: list[Branch]
    """The branches still waiting for a final answer."""
    finals: list[Response]
    cancelled: bool
    declined: bool
    """A 6xx came: the other branches are being cancelled, and the 6xx goes upstream
    once they have ended, unless one of them answers 2xx first (§16.7 step 5)."""
    done: bool
    policy: PolicyContext | None
    """The caller's source group and the hidden dialog's plan, for the policy stages."""
    call: CallNotes | None
    """Set when this forwarding is a call's INVITE and call events are on."""
    ending: CallNotes | None
    """Set when this forwarding is a BYE and call events are on."""
    caller_flow: str | None
    """The flow token of a caller behind NAT or on a connection (or of the phone sending a
    target refresh), for the Record-Route of a new dialog and the Contact toward the far end
    (`contacts`): the far end's in-dialog requests reach the caller by it."""
    offered: bytes | None
    """rtpengine's SDP for the request's offer: what the branches to relayed hops carry."""
    answered: tuple[str | None, bytes, bytes] | None
    """The last SDP answer rewritten (its To tag, its SDP) and rtpengine's rewrite: the same
    SDP again from the same branch (a 200 after its 183, a 2xx retransmitted) reuses it."""
    late: bool
    """Relayed without an offer of its own (an INVITE without SDP; a late-offer dialog's PRACK):
    the SDP of its 1xx/2xx is the callee's offer, its own SDP (the PRACK's) the answer."""
    late_offered: bool
    """A late offer went to rtpengine: the call's failure deletes its session."""
    media_deleted: bool
    """The call failed and its session was deleted: an offer still out is deleted once in."""

    dns_rounds: int
    """How often its next hop, a Route's or Request-URI's name, waited for DNS (`Resolve`)."""
    unresolved: str
    """Why a hop given by name had no target (`480` with it when nothing else answered)."""

    def __init__(
        self,
        server: ServerTransaction,
        hops: list[Hop],
        loop_hash: str,
        inbound: Interface,
        record_route: bool,
    ) -> None:
        self.server = server
        self.method = server.request.method
        self.hops = hops
        self.loop_hash = loop_hash
        self.inbound = inbound
        self.record_route = record_route
        self.branches = []
        self.finals = []
        self.cancelled = False
        self.declined = False
        self.done = False
        self.policy = None
        self.call = None
        self.ending = None
        self.caller_flow = None
        self.offered = None
        self.answered = None
        self.late = False
        self.late_offered = False
        self.media_deleted = False
        self.dns_rounds = 0
        self.unresolved = ""

    @property
    def request(self) -> Request:
        """The request as received (top Via stamped), the template of every branch."""
        return self.server.request

    def settle(self, branch: Branch) -> None:
        """`branch` has its final answer: it no longer holds the forwarding back."""
        if branch in self.branches:
            self.branches.remove(branch)

    def named_hop(self) -> int | None:
        """The first hop of the next group (`next_group`) still given by name, which RFC 3263
        turns into its targets before the group is sent; None: every hop has its address."""
        hops = self.hops
        for at, hop in enumerate(hops):
            if at and (hop.q is None or hop.q != hops[0].q):
                return None
            if hop.name is not None:
                return at
        return None

    def next_group(self) -> list[Hop]:
        """Take the hops to try now off `hops`: one gateway, or every contact of the top q."""
        hops = self.hops
        group = [hops.pop(0)]
        q = group[0].q
        while q is not None and hops and hops[0].q == q:
            group.append(hops.pop(0))
        return group

    def best_response(self) -> Response | None:
        """RFC 3261 §16.7 step 6: any 6xx, else the lowest class; the first of it wins."""
        best: Response | None = None
        for response in self.finals:
            if response.status >= 600:
                return response
            if best is None or response.status // 100 < best.status // 100:
                best = response
        return best

    def failure(
        self,
        sent: Request,
        status: int,
        to_tag: str,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """A final answer the edge makes for a branch (timeout, transport error, unservable hop).

        Made from the request as it arrived, not from the branch's copy
        `sent`, which may have left hidden (masked Call-ID, rewritten From):
        the caller must get back its own identities.  `sent`'s top Via (ours)
        goes on top, so it is relayed exactly like a hop's answer.
        """
        response = make_response(self.request, status, reason, to_tag=to_tag, headers=headers)
        response.prepend_via(sent.top_via)
        return response


def failover_allowed(status: int) -> bool:
    """408 and 5xx move on to the next gateway (a 6xx or other 4xx is the callee's word)."""
    return status == 408 or 500 <= status < 600
