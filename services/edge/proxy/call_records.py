"""The call records' side of the proxy core: its `edge.call.…` events, at the points they happen.

`CallRecords` sits in `Proxy`'s class chain between `Answers` (the state)
and `Forking` (the branches), which calls it where a call's events happen;
it turns what a `Forwarding`, its `Branch`es and a `Parked` request already
hold into events (`call_events.CallEvents` builds them), without any memory
of its own.  Every method returns at once when call events are off.
"""

from __future__ import annotations

from typing import Literal

from services.edge.proxy.actions import Action, Publish
from services.edge.proxy.answers import Answers
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.call_legs import callee_leg, caller_leg
from services.edge.proxy.forwarding import Branch, Forwarding, Parked
from services.edge.proxy.routes import Hop
from shared.contracts.calls import EdgeCause
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri


class CallRecords(Answers):
    """Publishes a call's events from the forwarding state (none with call events off)."""

    def _publish_refused(
        self,
        request: Request,
        source: Destination,
        answer: Response,
        now: float,
        actions: list[Action],
        *,
        parked: Parked | None = None,
        cause: EdgeCause | None = None,
    ) -> None:
        """A call (out-of-dialog INVITE) the edge answered itself before any branch: its record.

        A `CallStarted` with what is known, then its `CallFailed`.  A 401/407
        challenge is no outcome: the caller asks again, same Call-ID and From tag.
        """
        events = self.call_events
        if events is None or request.method != "INVITE" or answer.status in (401, 407):
            return
        actions.append(self._call_started(events, request, source, now, parked=parked))
        notes = events.notes(request, now)
        actions.append(
            events.failed(notes, answer.status, answer.reason, now, by_edge=True, cause=cause)
        )

    def _publish_handed_off(
        self, parked: Parked, hops: list[Hop], now: float, actions: list[Action]
    ) -> None:
        """A call handed to the B2BUA: its `CallStarted` (mode b2bua); the rest of its events
        are the B2BUA runner's (`runtime.b2bua_runner`), under the caller's Call-ID and tag."""
        events = self.call_events
        if events is None:
            return
        rule = next((hop.rule_id for hop in hops if hop.rule_id is not None), None)
        request, source = parked.request, parked.source
        actions.append(
            self._call_started(events, request, source, now, parked=parked, rule=rule, mode="b2bua")
        )

    def _call_started(
        self,
        events: CallEvents,
        request: Request,
        source: Destination,
        now: float,
        *,
        parked: Parked | None = None,
        rule: str | None = None,
        mode: Literal["b2bua"] | None = None,
    ) -> Publish:
        """`parked`: what routing found out so far (None: nothing, the call was refused first);
        `mode` b2bua: the call is handed to the B2BUA."""
        if parked is None:
            return events.started(request, source, now)
        subscriber = _aor(request) if parked.authenticated else None
        return events.started(
            request,
            source,
            parked.seen_at,
            callee=parked.callee,
            subscriber=subscriber,
            rule=rule,
            group=parked.group,
            peer=parked.peer,
            mode=mode,
        )

    def _note_in_dialog(
        self, forwarding: Forwarding, events: CallEvents, now: float, actions: list[Action]
    ) -> None:
        """A BYE's end is published with its final answer; a re-INVITE or UPDATE at once."""
        request = forwarding.request
        method = request.method
        if method == "BYE":
            forwarding.ending = events.notes(request, now)
        elif method in ("INVITE", "UPDATE"):
            actions.append(events.updated(request, now))

    def _publish_cancelled(
        self,
        forwarding: Forwarding | None,
        parked: Parked | None,
        now: float,
        actions: list[Action],
    ) -> None:
        """The caller's CANCEL matched a call: one routed (`forwarding`), or still being
        routed (`parked`: its `CallStarted`, with what is known, comes first)."""
        events = self.call_events
        if events is None:
            return
        if forwarding is not None and forwarding.call is not None:
            actions.append(events.cancelled(forwarding.call, now))
        elif parked is not None and parked.request.method == "INVITE":
            request = parked.request
            actions.append(self._call_started(events, request, parked.source, now, parked=parked))
            actions.append(events.cancelled(events.notes(request, now), now))

    def _publish_branch(
        self, branch: Branch, status: int, reason: str, now: float, actions: list[Action]
    ) -> bool:
        """`branch`'s final answer, once (a 2xx retransmitted, a late answer after a give-up
        are not new): True when published now.

        Sent, as every event of the call, never before the call's start (`CallEvents.after`):
        a failover branch's time is its trigger's receive stamp, and a CI run's 503, answered
        0.3 ms after the INVITE, came out stamped before the call was routed, its branch
        before the first, and the record listed them out of order."""
        call, events = branch.forwarding.call, self.call_events
        if call is None or events is None or branch.reported:
            return False
        branch.reported = True
        sent_at = branch.sent_at if branch.sent_at >= call.seen_at else call.seen_at
        actions.append(
            events.branch(call, branch.hop, sent_at=sent_at, status=status, reason=reason, now=now)
        )
        return True

    def _publish_ringing(
        self, forwarding: Forwarding, status: int, now: float, actions: list[Action]
    ) -> None:
        call, events = forwarding.call, self.call_events
        if call is None or events is None or call.rang:
            return
        call.rang = True
        actions.append(events.ringing(call, status, now))

    def _publish_success(
        self, branch: Branch, response: Response, first: bool, now: float, actions: list[Action]
    ) -> None:
        """A 2xx relayed: an INVITE's branch and answer (each 2xx branch once: a fork
        answered twice is two dialogs), or a BYE's end (its first final only)."""
        forwarding, events = branch.forwarding, self.call_events
        if events is None:
            return
        call = forwarding.call
        if call is not None:
            if self._publish_branch(branch, response.status, response.reason, now, actions):
                to_tag = response.to_tag or ""
                invite, hop = forwarding.request, branch.hop
                legs = (
                    caller_leg(invite, forwarding.server.destination, response),
                    callee_leg(branch.client.request, hop.destination, response),
                )
                cseq = invite.cseq.seq
                actions.append(events.answered(call, hop, to_tag, now, cseq=cseq, legs=legs))
        elif forwarding.ending is not None and first:
            actions.append(events.ended(forwarding.ending, response.status))

    def _publish_unmatched_answer(
        self, response: Response, source: Destination, now: float, actions: list[Action]
    ) -> None:
        """A 2xx to an INVITE forwarded with no transaction: the call's answer, unless it is
        a retransmission (they match the transaction for its 32 s, as long as they come).

        Without it, a call whose INVITE left an edge that was then killed (its
        `CallStarted` journaled) and whose 2xx the restarted edge relayed had no answer
        anywhere: the caller talked, and its record stayed open.  A re-INVITE's 2xx
        counts too: the record takes the earliest answer.
        """
        events = self.call_events
        if events is None or response.status // 100 != 2 or response.cseq.method != "INVITE":
            return
        if events.unmatched_allowed(response, now):
            actions.append(events.answered_unmatched(response, source, now))

    def _publish_final(
        self,
        forwarding: Forwarding,
        sent: Response,
        no_branch: bool,
        now: float,
        actions: list[Action],
    ) -> None:
        """The final non-2xx sent upstream: a call's failure (none after a CANCEL: the
        `CallCancelled` said it), or a BYE's end.  Ours when it carries our To tag."""
        events = self.call_events
        if events is None:
            return
        call = forwarding.call
        if call is not None:
            if forwarding.cancelled:
                return
            by_edge = sent.to_tag == self._to_tag
            # No branch at all: a policy refused every hop, which is no routing failure.
            cause: EdgeCause | None = "unavailable" if no_branch else None
            actions.append(
                events.failed(call, sent.status, sent.reason, now, by_edge=by_edge, cause=cause)
            )
        elif forwarding.ending is not None:
            actions.append(events.ended(forwarding.ending, sent.status))


def _aor(request: Request) -> str:
    """The AoR a caller authenticated as: the From user at its domain (the realm)."""
    uri = request.from_.uri
    if not isinstance(uri, SipUri):
        return str(uri)
    return f"sip:{uri.user or ''}@{uri.host.lower()}"
