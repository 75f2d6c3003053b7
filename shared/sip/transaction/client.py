"""Client transactions (RFC 3261 §17.1, RFC 6026 §8.4): send a request until answered.

On UDP the request is retransmitted (Timer A doubling without bound for
INVITE, Timer E capped at T2 otherwise) until a response or the 64*T1 timeout
(B, F).  A 2xx to INVITE moves to Accepted (RFC 6026) so that 2xx
retransmissions still reach the TU, which must forward or ACK each of them.
A proxy's INVITE additionally runs Timer C (§16.8).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from shared.sip.message import Request, Response
from shared.sip.responses import make_response
from shared.sip.transaction.base import Transaction
from shared.sip.transaction.events import (
    ResponseReceived,
    Send,
    State,
    TimedOut,
    TimerName,
    TransactionEvent,
)
from shared.sip.transaction.matching import client_key
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from shared.sip.transaction.table import TransactionTable


class ClientTransaction(Transaction):
    """Sends `request` to `destination`; feed it the responses the table matches to it."""

    __slots__ = ("_interval", "data")

    def __init__(
        self,
        table: TransactionTable,
        request: Request,
        destination: Destination,
        state: State,
    ) -> None:
        branch = request.top_branch
        if not branch:
            raise ValueError("a client transaction needs a branch in its top Via")
        super().__init__(table, client_key(branch, request.method), request, destination, state)
        self.data = request.to_bytes()
        self._interval = table.settings.t1

    @abc.abstractmethod
    def start(self, now: float) -> list[TransactionEvent]:
        """The first transmission and the timers that guard it."""

    @abc.abstractmethod
    def receive_response(self, response: Response, now: float) -> list[TransactionEvent]:
        """A response the table matched to this transaction."""

    @property
    def answered(self) -> bool:
        """A final response ended the wait (Completed, Accepted): the transaction only
        absorbs retransmissions now, and its TU, having read the request on that response,
        says what to keep of it (`hold_request_as_bytes`)."""
        return self.state is State.COMPLETED or self.state is State.ACCEPTED

    def _transmit(self) -> Send:
        return Send(self.data, self.destination, self)

    def _timed_out(self, name: str) -> TimedOut:
        return TimedOut(name, make_response(self.request, 408))


class InviteClientTransaction(ClientTransaction):
    kind = "invite_client"

    __slots__ = ("_ack", "_cancel_grace", "proxy")

    def __init__(
        self,
        table: TransactionTable,
        request: Request,
        destination: Destination,
        *,
        proxy: bool = False,
    ) -> None:
        super().__init__(table, request, destination, State.CALLING)
        self.proxy = proxy
        self._cancel_grace = False
        self._ack = b""
        """The ACK of a non-2xx final, sent again as it was for each retransmission of it
        (§17.1.1.2): the request may be held as bytes by then."""

    def start(self, now: float) -> list[TransactionEvent]:
        if not self.reliable:
            self._arm(TimerName.A, self._interval, now)
        self._arm(TimerName.B, self.settings.transaction_timeout, now)
        if self.proxy:
            self._arm(TimerName.C, self.settings.timer_c, now)
        return [self._transmit()]

    def receive_response(self, response: Response, now: float) -> list[TransactionEvent]:
        state = self.state
        status = response.status
        events: list[TransactionEvent] = []
        if state is State.CALLING or state is State.PROCEEDING:
            events.append(ResponseReceived(response))
            self._disarm(TimerName.A, TimerName.B)
            if status < 200:
                self.state = State.PROCEEDING
                if self.proxy and status > 100 and not self._cancel_grace:
                    self._arm(TimerName.C, self.settings.timer_c, now)
            elif status < 300:
                self._disarm(TimerName.C)
                self.state = State.ACCEPTED  # for 2xx retransmissions (RFC 6026)
                self._arm(TimerName.M, self.settings.transaction_timeout, now)
            else:
                self._disarm(TimerName.C)
                self.state = State.COMPLETED
                self._ack = ack_for(self.request, response)
                events.append(Send(self._ack, self.destination, self))
                self._linger(TimerName.D, self.settings.timer_d(self.reliable), now, events)
        elif state is State.COMPLETED:
            if status >= 300:  # the final response again: our ACK was lost
                events.append(Send(self._ack, self.destination, self))
        elif state is State.ACCEPTED and 200 <= status < 300:
            events.append(ResponseReceived(response))
        return events

    def _timer_fired(self, name: str, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        if name == TimerName.A:
            self._interval *= 2
            self._arm(TimerName.A, self._interval, now)
            events.append(self._transmit())
        elif name == TimerName.C and self.state is State.PROCEEDING and not self._cancel_grace:
            # The TU now CANCELs; give the callee 64*T1 to answer with 487.
            events.append(TimedOut(name))
            self._cancel_grace = True
            self._arm(TimerName.C, self.settings.transaction_timeout, now)
        elif name in (TimerName.B, TimerName.C):
            events.append(self._timed_out(name))
            self._terminate(events)
        else:  # D in Completed, M in Accepted
            self._terminate(events)
        return events


class NonInviteClientTransaction(ClientTransaction):
    kind = "non_invite_client"

    __slots__ = ()

    def __init__(self, table: TransactionTable, request: Request, destination: Destination) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} does not use a non-INVITE client transaction")
        super().__init__(table, request, destination, State.TRYING)

    def start(self, now: float) -> list[TransactionEvent]:
        if not self.reliable:
            self._arm(TimerName.E, self._interval, now)
        self._arm(TimerName.F, self.settings.transaction_timeout, now)
        return [self._transmit()]

    def receive_response(self, response: Response, now: float) -> list[TransactionEvent]:
        if self.state is not State.TRYING and self.state is not State.PROCEEDING:
            return []  # Completed absorbs retransmissions of the final response
        events: list[TransactionEvent] = [ResponseReceived(response)]
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self._disarm(TimerName.E, TimerName.F)
            self.state = State.COMPLETED
            self._linger(TimerName.K, self.settings.timer_i_or_k(self.reliable), now, events)
        return events

    def _timer_fired(self, name: str, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        if name == TimerName.E:
            # Proceeding retransmits every T2; Trying doubles up to T2.
            t2 = self.settings.t2
            self._interval = t2 if self.state is State.PROCEEDING else min(self._interval * 2, t2)
            self._arm(TimerName.E, self._interval, now)
            events.append(self._transmit())
        elif name == TimerName.F:
            events.append(self._timed_out(name))
            self._terminate(events)
        else:  # K
            self._terminate(events)
        return events


def ack_for(request: Request, response: Response) -> bytes:
    """The ACK a client transaction sends for a non-2xx final response (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and single top Via as the
    INVITE, the To of the response (with its tag), and the INVITE's Route set.
    """
    headers = [
        ("Via", _required(request.header("via"))),
        ("Max-Forwards", "70"),
        ("From", _required(request.header("from"))),
        ("To", _required(response.header("to"))),
        ("Call-ID", _required(request.header("call-id"))),
        ("CSeq", f"{request.cseq.seq} ACK"),
    ]
    routes = request.headers("route")
    if routes:
        headers.append(("Route", ", ".join(routes)))
    return Request.build("ACK", request.uri_text, headers).to_bytes()


def cancel_for(invite: Request) -> Request:
    """The CANCEL for a client transaction's INVITE (RFC 3261 §9.1): its Request-URI, its
    single top Via, Route, Call-ID, From, To and CSeq number."""
    headers = [
        ("Via", _required(invite.header("via"))),
        ("Max-Forwards", "70"),
        ("From", _required(invite.header("from"))),
        ("To", _required(invite.header("to"))),
        ("Call-ID", _required(invite.header("call-id"))),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    routes = invite.headers("route")
    if routes:
        headers.append(("Route", ", ".join(routes)))
    return Request.build("CANCEL", invite.uri_text, headers)


def _required(value: str | None) -> str:
    if value is None:
        raise ValueError("the INVITE lacks a header its ACK or CANCEL must copy")
    return value
