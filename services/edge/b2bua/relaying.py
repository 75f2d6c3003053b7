"""Relaying across a pair: a request out on one leg, its answers back on the other.

The engine's state and the half of it that runs after intake (`engine` is the other):
the transaction table, the pairs and their dialogs, and the relays in flight.  A
response on the outbound leg becomes the same status on the inbound one, with the
inbound leg's tag and the edge's Contact; a 2xx to an INVITE waits for the inbound
side's ACK, which becomes the ACK out (SDP and all, for a late offer).  The far end's
2xx retransmissions re-send that ACK, or until it came our 2xx (so the 2xx toward the
inbound side is retransmitted as often as the far end retransmits its own, §13.3.1.4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from services.edge.b2bua.headers import relayed_headers
from services.edge.b2bua.legs import TARGET_REFRESH, PairAddress
from services.edge.b2bua.pair import Pair, Relay, Side
from services.edge.b2bua.progress import ProgressNotes
from services.edge.b2bua.session_timer import SessionTimers, TimerPolicy
from shared.sip.branch import new_tag
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.responses import make_response
from shared.sip.timers import TimerSettings
from shared.sip.transaction import (
    AckReceived,
    ClientTransaction,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionTable,
    TransportFailed,
    cancel_for,
)

log = logging.getLogger("callmesh.edge.b2bua")

FAILOVER: Final = frozenset({408, 503})
"""Leg B's answers (a timeout of ours, a 503 or a transport failure) that try the next target."""
DialogKey = tuple[str, str]
"""A leg's Call-ID and the edge's tag on it: what an in-dialog request names."""


class Relaying:
    """The pairs, their dialogs and relays; see the module docstring."""

    def __init__(
        self,
        edge: PairAddress,
        settings: TimerSettings | None = None,
        policy: TimerPolicy | None = None,
    ) -> None:
        self.edge = edge
        self.timers = SessionTimers(policy or TimerPolicy())
        self.table = TransactionTable(settings)
        self.pairs: dict[str, Pair] = {}
        self._dialogs: dict[DialogKey, tuple[Pair, Side]] = {}
        self._relays: dict[ClientTransaction, Relay] = {}
        self._serving: dict[ServerTransaction, Relay] = {}
        self._unacked: dict[tuple[str, Side, int], Relay] = {}
        """2xx answers sent to a side, by pair, side and CSeq, until that side ACKs."""
        self.ended: list[str] = []
        """Ids of the pairs ended since the adapter last emptied this (it frees their state)."""
        self.notes = ProgressNotes()
        self.progress = self.notes.progress
        """The calls' steps since the adapter last emptied this (it publishes them)."""

    # ----- pairs and dialogs -----------------------------------------------------------

    def _hold(self, pair: Pair) -> None:
        """Index `pair` and both its legs' dialogs."""
        self.pairs[pair.id] = pair
        self._dialogs[(pair.a.call_id, pair.a.local_tag)] = (pair, "a")
        self._dialogs[(pair.b.call_id, pair.b.local_tag)] = (pair, "b")

    def _end(self, pair: Pair, now: float) -> None:
        """The call is over: its dialogs answer 481 from now on."""
        pair.ended = now
        self.timers.forget(pair.id)
        if self.pairs.pop(pair.id, None) is not None:
            self.ended.append(pair.id)
        self._dialogs.pop((pair.a.call_id, pair.a.local_tag), None)
        self._dialogs.pop((pair.b.call_id, pair.b.local_tag), None)

    # ----- answering -------------------------------------------------------------------

    def _answer(
        self,
        server: ServerTransaction,
        status: int,
        reason: str | None,
        now: float,
        actions: list[Send],
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """An answer of the edge's own; `to_tag` is the leg's, when the request has a leg."""
        tag = to_tag or new_tag()  # an out-of-dialog refusal: no leg to name it
        response = make_response(server.request, status, reason, to_tag=tag, headers=headers)
        self._respond(server, response, now, actions)

    def _respond(
        self, server: ServerTransaction, response: Response, now: float, actions: list[Send]
    ) -> None:
        for event in server.respond(response, now):
            self._server_event(server, event, now, actions)

    def _server_event(
        self, server: ServerTransaction, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        if isinstance(event, Send):
            actions.append(event)
        elif isinstance(event, AckReceived):  # an RFC 2543 ACK for our 2xx matched the INVITE
            relay = self._serving.get(server)
            if relay is not None:
                self._acked(relay, event.request, actions)
        elif isinstance(event, Terminated):
            self._serving.pop(server, None)

    # ----- relaying out ----------------------------------------------------------------

    def _relay(self, relay: Relay, request: Request, now: float, actions: list[Send]) -> None:
        """Send `request` on the leg opposite `relay.inbound`, in a client transaction."""
        self._serving[relay.server] = relay
        relay.sent = now
        peer = relay.pair.leg(relay.pair.other(relay.inbound)).peer
        client, events = self.table.start_client(request, peer, now)
        relay.client = client
        self._relays[client] = relay
        for event in events:
            self._client_event(client, event, now, actions)

    def _send_own(
        self,
        pair: Pair,
        side: Side,
        method: str,
        now: float,
        actions: list[Send],
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> ClientTransaction:
        """A request of the edge's own on `side` (a BYE, a session refresh)."""
        leg = pair.leg(side)
        request = leg.request(method, self.edge, headers)
        client, events = self.table.start_client(request, leg.peer, now)
        actions.extend(event for event in events if isinstance(event, Send))
        return client

    def _cancel_out(self, relay: Relay, now: float, actions: list[Send]) -> None:
        """CANCEL the relayed INVITE, or note to once it has a provisional answer (§9.1)."""
        client = relay.client
        if client is None or client.state is not State.PROCEEDING:
            relay.cancel_waits = client is not None and client.state is State.CALLING
            return
        peer = client.destination
        _, events = self.table.start_client(cancel_for(client.request), peer, now)
        actions.extend(event for event in events if isinstance(event, Send))

    # ----- answers coming back ---------------------------------------------------------

    def _client_event(
        self, client: ClientTransaction, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        if isinstance(event, Send):
            actions.append(event)
            return
        if isinstance(event, Terminated):
            ended = self._relays.pop(client, None)
            if ended is not None and ended.answer is not None and ended.ack is None:
                self._never_acked(ended, now, actions)
            return
        relay = self._relays.get(client)
        if relay is None:  # the edge's own request (a BYE): its answer does not matter
            return
        if isinstance(event, ResponseReceived):
            self._answered(relay, event.response, now, actions)
        elif isinstance(event, TimedOut) and event.response is not None:
            self._answered(relay, event.response, now, actions, own=True)  # a 408 of our own
        elif isinstance(event, TransportFailed):
            self._answered(relay, make_response(client.request, 503), now, actions, own=True)

    def _answered(
        self,
        relay: Relay,
        response: Response,
        now: float,
        actions: list[Send],
        *,
        own: bool = False,
    ) -> None:
        """The outbound leg's answer to `relay`'s request, relayed to the inbound leg (`own`:
        the edge's 408 or 503 in its place)."""
        status = response.status
        if status == 100:
            return
        pair = relay.pair
        outbound = pair.other(relay.inbound)
        if relay.answer is not None and response.to_tag != pair.leg(outbound).remote_tag:
            log.info("B2BUA pair %s: a second dialog's 2xx ignored", pair.id)
            return  # a fork downstream answered too: unACKed, it ends itself (§13.3.1.4)
        if relay.creating and status == 422 and self._retry_422(relay, response, now, actions):
            return
        if relay.creating:
            self.notes.response(relay, response)
        if status < 300:
            try:
                pair.leg(outbound).answered(response, creating=relay.creating)
            except SipError as error:  # a dialog too large to keep
                log.info("B2BUA pair %s: answer refused: %s", pair.id, error.reason)
                if status >= 200:
                    self._refuse_answer(relay, now, actions)
                return
            if status >= 200 and response.cseq.method in TARGET_REFRESH and pair.ended is None:
                self.timers.answered(pair.id, outbound, response, now)
        if relay.cancel_waits and status < 200:
            relay.cancel_waits = False
            self._cancel_out(relay, now, actions)
        if status >= 200 and response.cseq.method == "INVITE" and status < 300:
            self._answered_invite(relay, response, now, actions)
            return
        if relay.cancelled:
            return  # the inbound side has its 487 already
        if status >= 200:
            if relay.creating and status in FAILOVER and self._fail_over(relay, now, actions):
                return  # leg B again, toward the next target: the caller waits on
            if response.cseq.method in TARGET_REFRESH:
                pair.offering = None
                if status >= 300:
                    pair.leg(outbound).refused()
            if relay.creating:
                self._end(pair, now)
                self.notes.note(pair, "failed", status, response.reason, by_edge=own)
        self._respond(relay.server, self._counterpart(relay, response, now), now, actions)

    def _fail_over(self, relay: Relay, now: float, actions: list[Send]) -> bool:
        """Leg B refused with 503 or timed out: whether it went again toward another target
        (here: none; `engine.B2bua` asks its adapter)."""
        return False

    def _retry_422(self, relay: Relay, response: Response, now: float, actions: list[Send]) -> bool:
        """Leg B's INVITE refused 422 (our session interval too small for it): whether it
        was asked again (here: never; `engine.B2bua` does, once, with the Min-SE named)."""
        return False

    def _refuse_answer(self, relay: Relay, now: float, actions: list[Send]) -> None:
        """A 2xx the edge cannot take on (its dialog would not fit the pair's bounds): ended
        with ACK and BYE, a 502 to the inbound side."""
        pair = relay.pair
        self._ack_out(relay, None, actions)
        self._send_own(pair, pair.other(relay.inbound), "BYE", now, actions)
        if relay.creating:
            self._end(pair, now)
        pair.offering = None
        if not relay.cancelled:
            self._answer(relay.server, 502, "Bad Gateway (answer refused)", now, actions)
            if relay.creating:
                self.notes.note(pair, "failed", 502, "Bad Gateway (answer refused)", by_edge=True)

    def _answered_invite(
        self, relay: Relay, response: Response, now: float, actions: list[Send]
    ) -> None:
        """A 2xx to a relayed INVITE: to the inbound side, which must ACK it; again, the
        ACK out again, or our 2xx if that side has not ACKed yet."""
        pair = relay.pair
        if relay.ack is not None:
            actions.append(Send(relay.ack, pair.leg(pair.other(relay.inbound)).peer))
            return
        if relay.cancelled or pair.ended is not None:  # answered after all: ACKed, and the
            self._ack_out(relay, None, actions)  # call hung up if this was its INVITE
            if relay.creating:
                self._send_own(pair, pair.other(relay.inbound), "BYE", now, actions)
            return
        if relay.answer is None:
            if relay.creating:
                pair.answered = now
                self.notes.note(pair, "answered", response.status)
            relay.answer = self._counterpart(relay, response, now)
            seq = relay.server.request.cseq.seq
            self._unacked[(pair.id, relay.inbound, seq)] = relay
        self._respond(relay.server, relay.answer, now, actions)

    def _counterpart(self, relay: Relay, response: Response, now: float) -> Response:
        """`response` as the inbound leg's: same status, reason and body, the allowed
        headers, that leg's tag, and for a dialog's answer the edge's Contact, that leg's
        session timer (`session_timer`) and (to the creating INVITE) the Record-Route of the
        request as it came in (§12.1.1)."""
        request = relay.server.request
        leg = relay.pair.leg(relay.inbound)
        headers = relayed_headers(response)
        if response.status < 300 and response.cseq.method in TARGET_REFRESH:
            headers.append(("Contact", self.edge.contact(leg.peer.transport)))
            if response.status >= 200:
                headers += self.timers.answering(relay.pair.id, relay.inbound, request, now)
            if relay.creating:
                headers.extend(("Record-Route", value) for value in request.headers("record-route"))
        answer = make_response(
            request, response.status, response.reason, to_tag=leg.local_tag,
            headers=headers, body=response.body,
        )  # fmt: skip # the response's parts on two lines
        if 200 <= response.status < 300:
            leg.sent(answer)  # an SDP answer (or a late offer) on the inbound leg
        return answer

    def _never_acked(self, relay: Relay, now: float, actions: list[Send]) -> None:
        """Our 2xx went unACKed for 64*T1: the dialog stands, the session ends (§13.3.1.4),
        the far side ACKed and both sent a BYE."""
        self._acked(relay, None, actions)
        pair = relay.pair
        if pair.ended is None:
            self._end(pair, now)
            self.notes.note(pair, "ended", 200, by_edge=True)
            self._send_own(pair, "a", "BYE", now, actions)
            self._send_own(pair, "b", "BYE", now, actions)

    def _acked(self, relay: Relay, ack: Request | None, actions: list[Send]) -> None:
        """The inbound side ACKed our 2xx: the ACK out, carrying its body (a late answer)."""
        self._unacked.pop((relay.pair.id, relay.inbound, relay.server.request.cseq.seq), None)
        relay.pair.offering = None
        self._ack_out(relay, ack, actions)

    def _ack_out(self, relay: Relay, ack: Request | None, actions: list[Send]) -> None:
        client = relay.client
        if client is None or relay.ack is not None:
            return
        pair = relay.pair
        leg = pair.leg(pair.other(relay.inbound))
        headers = relayed_headers(ack) if ack is not None else []
        body = ack.body if ack is not None else b""
        seq = client.request.cseq.seq
        relay.ack = leg.request("ACK", self.edge, headers, body, cseq=seq).to_bytes()
        actions.append(Send(relay.ack, leg.peer))
