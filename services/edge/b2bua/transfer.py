"""Moving an answered pair's far end to another target: third party call control (RFC 3725).

The caller's leg A stays; leg B is replaced by a new leg C.  The
flow is RFC 3725's flow I, the edge being the controller and A already in a session:

1. an INVITE without a body (a delayed offer) on the new leg C toward the target;
2. C's 2xx carries C's offer: a re-INVITE of leg A with it (`pair.offering` is the
   edge's meanwhile: A's own re-INVITE or UPDATE gets 491, §14.2);
3. A's 2xx carries A's answer: the ACK on A, the ACK on C carrying A's answer, a BYE on
   the old leg B; the pair now joins A and C (leg B's place, dialog and session timer).

Failures leave the call as it was, A with B: C refusing or not answering (its own
transaction ACKs a non-2xx); A refusing the re-INVITE (491 included) or not answering it:
C's 2xx is ACKed (no body: the session it offered is not taken) and C gets a BYE; the
call ending meanwhile (a BYE from A or B, a hang-up, a dead session): C is cancelled, or
ACKed and sent a BYE; C's INVITE or A's re-INVITE ringing past Timer C (cancelled); C's
BYE before A's 2xx (answered, A's re-INVITE cancelled).  Each transfer's outcome is one
`Progress` step `transferred`.

REFER is not used: the edge would hand the move to the caller's phone (which may not
support it, and would then see the target), and the pair's topology hiding would end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeGuard

from services.edge.b2bua.headers import relayed_headers
from services.edge.b2bua.legs import Leg, PairAddress, transfer_leg
from services.edge.b2bua.pair import Pair, Progress, Side, TransferOutcome
from services.edge.b2bua.refreshing import Refreshing
from services.edge.b2bua.relaying import DialogKey
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.responses import make_response
from shared.sip.timers import TimerSettings
from shared.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransportFailed,
    cancel_for,
)
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge.b2bua")

Refusal = Literal["unknown", "unanswered", "transferring", "target"]
"""Why `start_transfer` did not start: no such pair, not answered yet, a transfer of it in
flight already, a target URI too long to keep."""


@dataclass(slots=True, eq=False)
class Transfer:
    """One transfer in flight: leg C and its INVITE, then the re-INVITE of leg A."""

    pair: Pair
    target: str
    leg: Leg
    invite: ClientTransaction
    offer: Response | None = None
    """C's 2xx (its offer), once it came."""
    reinvite: ClientTransaction | None = None
    ack_a: bytes | None = None
    ack_c: bytes | None = None
    done: bool = False
    cancelled: bool = False
    aborted: bool = False
    """The call ended while it was in flight: C is cancelled, or ACKed and sent a BYE."""
    cancel_caller: Literal["", "waits", "sent"] = ""
    """The re-INVITE of A cancelled (C hung up): waiting for A's provisional (§9.1), or sent."""


class Transferring(Refreshing):
    """Transfers of answered pairs (see the module docstring); `engine.B2bua` is one."""

    _call_ids: Callable[[], str]
    """Makes a new leg's Call-ID (`engine.B2bua`'s)."""

    def __init__(
        self,
        edge: PairAddress,
        settings: TimerSettings | None = None,
        policy: TimerPolicy | None = None,
    ) -> None:
        super().__init__(edge, settings, policy)
        self.transfers: dict[str, Transfer] = {}
        """Transfers in flight, by pair id (one at a time per pair)."""
        self._transfer_clients: dict[ClientTransaction, Transfer] = {}
        self._target_dialogs: dict[DialogKey, Transfer] = {}
        """Leg C's dialog from its 2xx to the caller's (then it is the pair's): its BYE."""

    def start_transfer(
        self, pair_id: str, target: str, destination: Destination, now: float
    ) -> tuple[Refusal | None, list[Send]]:
        """Begin moving the answered pair `pair_id` to `target` (a URI, reached at
        `destination`) on a new leg: leg C's INVITE, without a body.  None and the sends,
        or why not (nothing sent)."""
        pair = self.pairs.get(pair_id)
        if pair is None or pair.ended is not None:
            return "unknown", []
        if pair.answered is None:
            return "unanswered", []
        if pair_id in self.transfers:
            return "transferring", []
        try:
            leg = transfer_leg(pair.a, target, destination, self._call_ids())
        except SipError:
            return "target", []
        request = leg.request("INVITE", self.edge, self.timers.policy.offer())
        client, events = self.table.start_client(request, destination, now, proxy=True)
        transfer = Transfer(pair, target, leg, client)
        self.transfers[pair_id] = self._transfer_clients[client] = transfer
        sends = [event for event in events if isinstance(event, Send)]
        return None, sends

    # ----- the transfers' transactions -------------------------------------------------

    def _client_event(
        self, client: ClientTransaction, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        transfer = self._transfer_clients.get(client)
        if transfer is None:
            super()._client_event(client, event, now, actions)
            return
        if isinstance(event, Send):
            actions.append(event)
        elif isinstance(event, Terminated):
            del self._transfer_clients[client]
        elif client is transfer.invite:
            self._target_event(transfer, event, now, actions)
        else:
            self._caller_event(transfer, event, now, actions)

    def _target_event(
        self, transfer: Transfer, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        """Leg C's answer: a provisional (C's early tag), its 2xx (the re-INVITE of A), or
        a failure; Timer C after a provisional (ringing too long): cancelled, failed."""
        if _rang_out(event):
            self._cancel_target(transfer, now, actions)
            self._failed(transfer, "target", 408, "Request Timeout (no answer)", True)
            return
        response = _answer_of(event, transfer.invite)
        if response is None or response.status == 100:
            return
        status, leg = response.status, transfer.leg
        if status < 200:
            if transfer.aborted and transfer.invite.state is State.PROCEEDING:
                self._cancel_target(transfer, now, actions)
            return
        if status >= 300:
            if not transfer.done:
                by_edge = not isinstance(event, ResponseReceived)
                self._failed(transfer, "target", status, response.reason, by_edge)
            return
        if transfer.ack_c is not None:  # its 2xx again: our ACK was lost
            actions.append(Send(transfer.ack_c, leg.peer))
            return
        if transfer.offer is not None:  # again before A answered, or another fork's
            return
        pair = transfer.pair
        try:
            leg.answered(response, creating=True)
        except SipError as error:  # a dialog too large to keep
            log.info("B2BUA pair %s: transfer target's answer refused: %s", pair.id, error.reason)
            self._drop_target(transfer, response, now, actions)
            self._failed(transfer, "target", 502, "Bad Gateway (answer refused)", True)
            return
        transfer.offer = response
        if transfer.aborted or transfer.done:
            self._drop_target(transfer, response, now, actions)
            return
        if not response.body or pair.offering is not None:
            self._drop_target(transfer, response, now, actions)
            if response.body:  # an offer of A's or B's is crossing the pair
                self._failed(transfer, "target", 491, "Request Pending", True)
            else:
                self._failed(transfer, "target", 488, "Not Acceptable Here (no offer)", True)
            return
        pair.offering = "b"  # the edge's offer, on leg B's behalf: A's gets 491
        headers = relayed_headers(response) + self.timers.requesting(pair.id, "a")
        request = pair.a.request("INVITE", self.edge, headers, response.body)
        client, events = self.table.start_client(request, pair.a.peer, now, proxy=True)
        transfer.reinvite = client
        self._transfer_clients[client] = transfer
        self._target_dialogs[(leg.call_id, leg.local_tag)] = transfer
        actions.extend(event for event in events if isinstance(event, Send))

    def _caller_event(
        self, transfer: Transfer, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        """Leg A's answer to the re-INVITE carrying C's offer; Timer C after a provisional
        (ringing too long): the re-INVITE cancelled, and failed as if A had refused it."""
        reinvite = transfer.reinvite
        assert reinvite is not None  # the only other transaction of a transfer
        if _rang_out(event):
            if transfer.done:
                return
            self._cancel_caller(transfer, now, actions)
            event = TimedOut(event.timer, make_response(reinvite.request, 408))
        response = _answer_of(event, reinvite)
        if response is None or response.status < 200:
            if response is not None and transfer.cancel_caller == "waits":
                self._cancel_caller(transfer, now, actions)
            return
        pair, offer = transfer.pair, transfer.offer
        assert offer is not None  # the re-INVITE carried it
        if response.status >= 300:
            if transfer.done:
                return
            if pair.offering == "b":
                pair.offering = None
            pair.a.refused()  # C's offer: A keeps the session it had
            self._drop_target(transfer, offer, now, actions)
            by_edge = not isinstance(event, ResponseReceived)
            self._failed(transfer, "caller", response.status, response.reason, by_edge)
            return
        seq = reinvite.request.cseq.seq
        if transfer.ack_a is None:
            transfer.ack_a = pair.a.request("ACK", self.edge, cseq=seq).to_bytes()
        actions.append(Send(transfer.ack_a, pair.a.peer))
        if transfer.done:
            return  # its 2xx again
        if pair.offering == "b":
            pair.offering = None
        if pair.ended is not None or transfer.aborted:
            self._drop_target(transfer, offer, now, actions)
            self._failed(transfer, "call", 487, "Request Terminated (the call ended)", True)
            return
        try:
            pair.a.answered(response)
        except SipError as error:  # a Contact too long to keep: the old target stays
            log.info("B2BUA pair %s: caller's new target refused: %s", pair.id, error.reason)
        self.timers.answered(pair.id, "a", response, now)
        leg = transfer.leg
        seq_c = transfer.invite.request.cseq.seq
        ack = leg.request("ACK", self.edge, relayed_headers(response), response.body, cseq=seq_c)
        transfer.ack_c = ack.to_bytes()
        actions.append(Send(transfer.ack_c, leg.peer))
        self._send_own(pair, "b", "BYE", now, actions)
        self._replace_b(transfer, offer, now)

    def _replace_b(self, transfer: Transfer, offer: Response, now: float) -> None:
        """The pair joins A and C: C takes leg B's place (dialog, session timer; a refresh
        of B's in flight is forgotten: its answer, a 481 say, is not C's)."""
        pair, old = transfer.pair, transfer.pair.b
        for client, refresh in list(self._refreshes.items()):
            if refresh.pair is pair and refresh.side == "b":
                del self._refreshes[client]
        self._dialogs.pop((old.call_id, old.local_tag), None)
        pair.b = transfer.leg
        self._dialogs[(pair.b.call_id, pair.b.local_tag)] = (pair, "b")
        self.timers.answered(pair.id, "b", offer, now)
        self._finish(transfer)
        outcome = TransferOutcome(transfer.target, True, pair.b.call_id, old.call_id)
        self.progress.append(Progress(pair, "transferred", 200, "OK", transfer=outcome))

    # ----- ending ----------------------------------------------------------------------

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
        """As `Relaying._send_own`; the BYEs that end a call also end its transfer in flight
        (every end of an answered pair sends one)."""
        client = super()._send_own(pair, side, method, now, actions, headers=headers)
        transfer = self.transfers.get(pair.id)
        if method == "BYE" and pair.ended is not None and transfer is not None:
            self._abort(transfer, now, actions)
        return client

    def _abort(self, transfer: Transfer, now: float, actions: list[Send]) -> None:
        """The call ended with a transfer in flight: leg C cancelled (or, answered, ACKed and
        sent a BYE: `_target_event`, `_caller_event`), the outcome reported."""
        transfer.aborted = True
        if transfer.offer is not None:  # answered: not taken on (A's re-INVITE, if any, is moot)
            self._drop_target(transfer, transfer.offer, now, actions)
        elif transfer.invite.state is State.PROCEEDING:
            self._cancel_target(transfer, now, actions)
        # Not answered yet, nor ringing: cancelled on its first provisional (§9.1), or its 2xx
        # ACKed and sent a BYE (`_target_event`).
        self._failed(transfer, "call", 487, "Request Terminated (the call ended)", True)

    def _cancel_target(self, transfer: Transfer, now: float, actions: list[Send]) -> None:
        if transfer.cancelled:
            return
        transfer.cancelled = True
        invite = transfer.invite
        _, events = self.table.start_client(cancel_for(invite.request), invite.destination, now)
        actions.extend(event for event in events if isinstance(event, Send))

    def _target_request(
        self, request: Request, server: ServerTransaction, source: Destination, now: float,
        sends: list[Send],
    ) -> bool:  # fmt: skip # the parameters on two lines
        """A BYE from C between its 2xx and the caller's (`engine.B2bua._request`; False:
        not one): answered 200, the re-INVITE of A cancelled, the transfer failed, A-B kept.
        Raises the `SipError` answering a BYE that does not fit C's dialog."""
        key = (request.call_id, request.to_tag or "")
        transfer = self._target_dialogs.get(key)
        if transfer is None or request.method != "BYE":
            return False
        transfer.leg.accept(request, source)
        self._answer(server, 200, None, now, sends)
        # C's dialog is over: its 2xx, if it comes again, gets an ACK (no body) and no BYE.
        ack = transfer.leg.request("ACK", self.edge, cseq=transfer.invite.request.cseq.seq)
        transfer.ack_c = ack.to_bytes()
        pair = transfer.pair
        if pair.offering == "b":
            pair.offering = None
        pair.a.refused()  # C's offer: A keeps the session it had
        self._cancel_caller(transfer, now, sends)
        self._failed(transfer, "target", 487, "Request Terminated (the target hung up)", True)
        return True

    def _cancel_caller(self, transfer: Transfer, now: float, actions: list[Send]) -> None:
        """CANCEL the re-INVITE of A, once it rings (§9.1).  Its 487 then comes to a transfer
        done (ACKed); a 2xx crossing the CANCEL is ACKed too, A then holding C's offer (see
        docs/b2bua.md)."""
        reinvite = transfer.reinvite
        if reinvite is None or transfer.cancel_caller == "sent":
            return
        if reinvite.state is not State.PROCEEDING:
            transfer.cancel_caller = "waits"
            return
        transfer.cancel_caller = "sent"
        request, destination = cancel_for(reinvite.request), reinvite.destination
        _, events = self.table.start_client(request, destination, now)
        actions.extend(event for event in events if isinstance(event, Send))

    def _drop_target(
        self, transfer: Transfer, offer: Response, now: float, actions: list[Send]
    ) -> None:
        """C's 2xx not taken on: ACKed without a body (once), then a BYE on leg C."""
        if transfer.ack_c is not None:
            return
        leg, seq = transfer.leg, transfer.invite.request.cseq.seq
        if leg.remote_tag is None:
            leg.remote_tag = offer.to_tag
        transfer.ack_c = leg.request("ACK", self.edge, cseq=seq).to_bytes()
        actions.append(Send(transfer.ack_c, leg.peer))
        request = leg.request("BYE", self.edge)
        _, events = self.table.start_client(request, leg.peer, now)
        actions.extend(event for event in events if isinstance(event, Send))

    def _failed(
        self, transfer: Transfer, at: Literal["target", "caller", "call"], status: int,
        reason: str, by_edge: bool,
    ) -> None:  # fmt: skip # the parameters on two lines
        if transfer.done:
            return
        pair = transfer.pair
        outcome = TransferOutcome(transfer.target, False, transfer.leg.call_id, "", at)
        self._finish(transfer)
        self.progress.append(
            Progress(pair, "transferred", status, reason, by_edge=by_edge, transfer=outcome)
        )

    def _finish(self, transfer: Transfer) -> None:
        transfer.done = True
        leg = transfer.leg
        self._target_dialogs.pop((leg.call_id, leg.local_tag), None)
        if self.transfers.get(transfer.pair.id) is transfer:
            del self.transfers[transfer.pair.id]


def _rang_out(event: TransactionEvent) -> TypeGuard[TimedOut]:
    """Timer C after a provisional: an INVITE of the transfer's rang too long, the edge now
    CANCELs it (its final answer, a 487 most likely, then comes to a transfer done)."""
    return isinstance(event, TimedOut) and event.response is None


def _answer_of(event: TransactionEvent, client: ClientTransaction) -> Response | None:
    """The response an event of a transfer's INVITE brings: the far end's, or the edge's
    408 (a timeout) or 503 (a failure to send) in its place; None for other events."""
    if isinstance(event, ResponseReceived):
        return event.response
    if isinstance(event, TimedOut):
        return event.response
    if isinstance(event, TransportFailed):
        return make_response(client.request, 503)
    return None
