"""Media relay in the proxy core: rtpengine's work asked for as `Media` actions, off the call path.

An INVITE (or a relayed dialog's re-INVITE/UPDATE) with SDP toward a hop the
policy relays waits, its server transaction holding retransmissions, while
rtpengine takes the `offer`; the branches to relayed hops then carry
rtpengine's SDP (the client transactions retransmit that).  A 1xx/2xx with
SDP on such a branch waits for its `answer` before it goes upstream (a 2xx
retransmitted with the same SDP reuses the rewrite).  The call's session is
deleted when the call fails or is cancelled (its final answer ≥ 300), when an
unrelayed branch wins, and on BYE; a BYE or re-INVITE knows the call is
relayed from `cm-media` in the signed Record-Route (`dialogs`), so any edge,
after a restart too, does it.  `Forking` asks `_held_for_offer` once per
forwarding only while `media` is set, and `_held_for_answer` per response only
once an offer was taken or a late one is awaited: an unrelayed call costs an
attribute check or two at each.  A response of a branch arriving while an
earlier one is held waits behind it (`Branch.queued`): order is kept.

A **late offer** (an INVITE without SDP toward a relayed hop) is the other way
round, as an OpenSIPS or Kamailio user does it (`rtpengine_offer` on the
reply, `rtpengine_answer` on the ACK): the INVITE leaves at once with
`cm-media=late` in its Record-Route, the SDP of its 1xx/2xx is the callee's
offer, and the answer comes in the PRACK (of a reliable 1xx) or in the ACK.
The ACK of a 2xx has no transaction and the edge no dialog memory: the signed
mark in its Route says it carries the answer, and it is held for rtpengine's
rewrite like a request held for a DNS or limits round trip, then sent
statelessly.  A 2xx retransmitted after its transaction ended (or reaching a
restarted edge) is rewritten again the same way, its Record-Route's mark
saying offer or answer: rtpengine answers the same SDP with the same ports.
The tags go as rtpengine reads them, the offerer's first: swapped for an
offer in a response and an answer in a request.  SDP in a multipart/mixed
body is found and put back by `bodies`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from services.edge import metrics
from services.edge.proxy.actions import Action, Media, Send
from services.edge.proxy.dialogs import LATE, OwnRoute
from services.edge.proxy.forking import Forking
from services.edge.proxy.forwarding import Branch, Forwarding
from services.edge.proxy.media import OFFERING, Unsent, message_sdp, put_sdp
from services.edge.proxy.nat import behind_nat
from services.edge.proxy.routes import Hop
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")


class MediaRelaying(Forking):
    """Holds requests and responses for rtpengine's rewrite of their SDP; deletes sessions."""

    def media_done(self, ticket: int, sdp: bytes | None, now: float) -> list[Action]:
        """A `Media` action's outcome: rtpengine's SDP, or None when it failed."""
        actions: list[Action] = []
        held = self._media_held.pop(ticket, None)
        if isinstance(held, Forwarding):
            self._offered(held, sdp, now, actions)
        elif isinstance(held, Unsent):  # an ACK's answer, a 2xx with no transaction
            message = held.message
            if sdp is None:
                _unrelayed(held.command, message.call_id)
            else:
                message.set_body(put_sdp(message, sdp))
            actions.append(Send(message.to_bytes(), held.destination))
        elif held is not None:
            self._answered(held[0], held[1], sdp, now, actions)
        return actions

    def _answered(
        self,
        branch: Branch,
        response: Response,
        sdp: bytes | None,
        now: float,
        actions: list[Action],
    ) -> None:
        forwarding = branch.forwarding
        if sdp is None:
            _unrelayed("offer" if forwarding.late else "answer", response.call_id)
            rewrite = response.body
        else:
            rewrite = put_sdp(response, sdp)
            if forwarding.late and forwarding.request.to_tag is None:  # a new call's late offer
                if forwarding.media_deleted:  # the call failed while the offer was out
                    self.media_delete(response.call_id, actions)
                elif forwarding.answered is None:
                    metrics.MEDIA_RELAYED_CALLS.value += 1
        forwarding.answered = (response.to_tag, response.body, rewrite)
        queued, branch.queued = branch.queued or [], None
        self._branch_response(branch, response, now, actions)  # passes with the rewrite
        for later in queued:  # in order, each held again if it brings SDP of its own
            self._branch_response(branch, later, now, actions)
        self._hold_answered(branch)

    def media_delete(self, call_id: str, actions: list[Action]) -> None:
        """End the call's rtpengine session (fire and forget: nothing waits for it)."""
        actions.append(Media("delete", call_id, "", None, b"", 0))

    def _held_for_offer(self, forwarding: Forwarding, actions: list[Action]) -> bool:
        request = forwarding.request
        method = request.method
        if not any(hop.relay for hop in forwarding.hops):
            return False
        sdp = message_sdp(request)
        if sdp is None:
            forwarding.late = method == "INVITE"  # the offer comes in its answer
            return False
        if method == "PRACK" and forwarding.late:  # the answer to a reliable 1xx's offer
            actions.append(self._media("answer", request, sdp, forwarding, swap=True))
        elif method in OFFERING or method == "PRACK":
            actions.append(self._media("offer", request, sdp, forwarding))
        else:
            return False
        return True

    def _held_ack(
        self, request: Request, own: OwnRoute, destination: Destination, actions: list[Action]
    ) -> bool:
        """A relayed dialog's ACK with SDP: the answer to its 2xx's offer (a late offer); its
        mark signed (a trusted peer's ACK passes the dialog check without)."""
        sdp = message_sdp(request)
        if sdp is None or not self.dialogs.media_signed(request, own):
            return False
        held = Unsent(request, destination, "answer")
        actions.append(self._media("answer", request, sdp, held, swap=True))
        return True

    def _held_retransmission(
        self, response: Response, destination: Destination, actions: list[Action]
    ) -> bool:
        """A 2xx to an INVITE with no transaction left (retransmitted after it ended, or
        reaching a restarted edge) whose Record-Route of ours says the call is relayed: rtpengine
        rewrites its SDP again, an answer, or the callee's offer (`cm-media=late`)."""
        if response.status // 100 != 2 or response.cseq.method != "INVITE":
            return False
        sdp = message_sdp(response)
        if sdp is None:
            return False
        mark = self.dialogs.media_mark(response)
        if mark is None:
            return False
        command = "offer" if mark == LATE else "answer"
        held = Unsent(response, destination, command)
        actions.append(self._media(command, response, sdp, held, swap=mark == LATE))
        return True

    def _offered(
        self, forwarding: Forwarding, sdp: bytes | None, now: float, actions: list[Action]
    ) -> None:
        request = forwarding.request
        new_call = request.to_tag is None
        if sdp is not None:
            forwarding.offered = put_sdp(request, sdp)
            if new_call:
                metrics.MEDIA_RELAYED_CALLS.value += 1
        elif forwarding.late:  # a PRACK's answer: the call is up already, it goes as it came
            _unrelayed("answer", request.call_id)
        elif self.media is not None and self.media.required and not forwarding.cancelled:
            metrics.MEDIA_FAILURES["offer", "rejected"] += 1
            log.warning("rtpengine offer for %s failed: refused 503", request.call_id)
            self._done(forwarding)
            retry = (("Retry-After", str(self.media.retry_after)),)
            reason = "Service Unavailable (media relay)"
            sent = self._answer(forwarding.server, 503, reason, now, actions, headers=retry)
            if forwarding.call is not None:
                self._publish_final(forwarding, sent, True, now, actions)
            return
        else:
            metrics.MEDIA_FAILURES["offer", "unrelayed"] += 1
            log.warning("rtpengine offer for %s failed: carried on unrelayed", request.call_id)
        self._next_branch(forwarding, now, actions)

    def _held_for_answer(self, branch: Branch, response: Response, actions: list[Action]) -> bool:
        status = response.status
        if branch.queued is not None and status != 100:  # behind the one rtpengine has
            branch.queued.append(response)
            return True
        if status == 100 or status >= 300:
            return False
        forwarding = branch.forwarding
        if not branch.hop.relay:  # an unrelayed branch: its 2xx leaves the session unused
            if status >= 200 and not forwarding.done and forwarding.request.to_tag is None:
                self.media_delete(forwarding.request.call_id, actions)
            return False
        sdp = message_sdp(response)
        if sdp is None:
            return False
        answered = forwarding.answered
        if answered is not None and answered[:2] == (response.to_tag, response.body):
            response.set_body(answered[2])  # the same SDP again: the same rewrite
            return False
        branch.queued = []
        branch.answered = True  # the hop is alive: no failover while rtpengine rewrites
        branch.disarm(self._fr_timers)
        if forwarding.late:  # the INVITE had no SDP: this is the callee's offer
            forwarding.late_offered = True
            actions.append(self._media("offer", response, sdp, (branch, response), swap=True))
        else:
            actions.append(self._media("answer", response, sdp, (branch, response)))
        return True

    def _finish(self, forwarding: Forwarding, now: float, actions: list[Action]) -> None:
        was_done = forwarding.done
        Forking._finish(self, forwarding, now, actions)
        if (
            not was_done
            and (forwarding.offered is not None or forwarding.late_offered)
            and forwarding.request.to_tag is None
        ):  # failed or cancelled
            forwarding.media_deleted = True
            self.media_delete(forwarding.request.call_id, actions)

    def _dialog_media(
        self, request: Request, source: Destination, hop: Hop, own: OwnRoute, actions: list[Action]
    ) -> Hop:
        """A request along a route set: a relayed dialog's (`cm-media` in our Record-Route)
        has its offer relayed, and its BYE ends the session; a new call handed over along a
        flow is decided like any."""
        if request.to_tag is None:
            return self._relayed_hops([hop], request, source)[0]
        if not own.media or not self.dialogs.media_signed(request, own):
            return hop  # unrelayed, or a trusted peer's mark of its own making
        if request.method == "BYE":
            self.media_delete(request.call_id, actions)
        return replace(hop, relay=True)

    def _relayed_hops(self, hops: list[Hop], request: Request, source: Destination) -> list[Hop]:
        """`hops` marked `relay` where the policy toward each relays this new call's media.

        A call an edge relayed already (another edge handing it to a flow here, a
        spiral) carries that edge's signed `cm-media` Record-Route: its SDP is
        rtpengine's already, and a second offer of the same call would tangle its session.
        An INVITE without SDP is decided the same: its offer comes in the answer.
        """
        media = self.media
        if media is None or request.method != "INVITE":
            return hops
        if self.dialogs.relayed_before(request):
            return hops
        caller_nat: bool | None = None
        marked = []
        for hop in hops:
            policy = (
                self.policies.media_policy(hop)
                or media.domain_policy(request, hop.gateway_id is None and hop.rule_id is None)
                or media.default
            )
            relay = policy == "always"
            if policy == "nat":
                relay = hop.flow_token is not None or hop.remote_flow is not None
                if not relay:
                    if caller_nat is None:  # asked once per call, and only here
                        caller_nat = behind_nat(request, source)
                    relay = caller_nat
            marked.append(replace(hop, relay=True) if relay else hop)
        return marked

    def _media(
        self,
        command: str,
        message: Request | Response,
        sdp: bytes,
        held: Forwarding | tuple[Branch, Response] | Unsent,
        *,
        swap: bool = False,
    ) -> Media:
        """`swap`: the offer is the To side's (the callee's, or a re-INVITE's recipient's), so its
        tag goes first, as Kamailio's rtpengine module sends an offer in a reply or an answer in
        a request: rtpengine names each party by the tag of the SDP's author."""
        self._media_tickets += 1
        ticket = self._media_tickets
        self._media_held[ticket] = held
        from_tag, to_tag = message.from_tag or "", message.to_tag
        if swap:
            from_tag, to_tag = to_tag or "", from_tag
        return Media(command, message.call_id, from_tag, to_tag, sdp, ticket)


def _unrelayed(command: str, call_id: str) -> None:
    metrics.MEDIA_FAILURES[command, "unrelayed"] += 1
    log.warning("rtpengine %s for %s failed: its SDP goes unrelayed", command, call_id)
