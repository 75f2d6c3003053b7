"""Server transactions (RFC 3261 §17.2, RFC 6026 §8): answer a request reliably.

They absorb retransmitted requests, re-sending the last response instead of
bothering the TU, and on UDP retransmit a non-2xx INVITE final response
(Timer G, capped at T2) until the ACK comes (or Timer H gives up).  A 2xx to
INVITE moves to Accepted (RFC 6026): INVITE retransmissions are absorbed
without an answer, since retransmitting the 2xx is the TU's end-to-end job,
and further 2xx from the TU are still sent.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import TYPE_CHECKING

from shared.sip.message import Request, Response
from shared.sip.transaction.base import Transaction
from shared.sip.transaction.events import (
    AckReceived,
    Send,
    State,
    TimedOut,
    TimerName,
    TransactionEvent,
)
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from shared.sip.transaction.table import TransactionTable


class ServerTransaction(Transaction):
    """Answers `request` at `destination` (computed by `response_destination`)."""

    __slots__ = ("_last_response",)

    def __init__(
        self,
        table: TransactionTable,
        key: Hashable,
        request: Request,
        destination: Destination,
        state: State,
    ) -> None:
        super().__init__(table, key, request, destination, state)
        self._last_response: bytes | None = None

    def _rest(self) -> None:
        """Its TU has answered, having read the request: held as its bytes."""
        self.hold_request_as_bytes()

    def matches_to_tag(self, request: Request) -> bool:
        """The To-tag check RFC 2543 matching needs after the key lookup (§17.2.3)."""
        return request.to_tag == self.request.to_tag

    @abc.abstractmethod
    def receive_request(self, request: Request, now: float) -> list[TransactionEvent]:
        """A retransmission of the request (or, for INVITE, its ACK) matched to this transaction."""

    @abc.abstractmethod
    def respond(self, response: Response, now: float) -> list[TransactionEvent]:
        """The TU answers; what is sent, and the state reached, depend on the status."""

    def _send(self, response: Response) -> Send:
        data = response.to_bytes()
        self._last_response = data
        return Send(data, self.destination)

    def _resend(self) -> list[TransactionEvent]:
        if self._last_response is None:
            return []
        return [Send(self._last_response, self.destination)]


class InviteServerTransaction(ServerTransaction):
    kind = "invite_server"

    __slots__ = ("_final_to_tag", "_interval")

    def __init__(
        self, table: TransactionTable, key: Hashable, request: Request, destination: Destination
    ) -> None:
        super().__init__(table, key, request, destination, State.PROCEEDING)
        self._interval = table.settings.t1
        self._final_to_tag: str | None = None

    def receive_request(self, request: Request, now: float) -> list[TransactionEvent]:
        state = self.state
        if request.method != "ACK":
            # An INVITE retransmission: re-send the last provisional or the
            # final non-2xx; in Accepted and Confirmed it is simply absorbed.
            if state is State.PROCEEDING or state is State.COMPLETED:
                return self._resend()
            return []
        if state is State.COMPLETED:
            self._disarm(TimerName.G, TimerName.H)
            self.state = State.CONFIRMED
            events: list[TransactionEvent] = []
            self._linger(TimerName.I, self.settings.timer_i_or_k(self.reliable), now, events)
            return events
        if state is State.ACCEPTED:
            return [AckReceived(request)]
        return []

    def respond(self, response: Response, now: float) -> list[TransactionEvent]:
        status = response.status
        state = self.state
        if state is State.ACCEPTED and 200 <= status < 300:
            return [self._send(response)]
        if state is not State.PROCEEDING:
            return []
        events: list[TransactionEvent] = [self._send(response)]
        if status >= 200:
            self._final_to_tag = response.to_tag
        if 200 <= status < 300:
            self.state = State.ACCEPTED
            self._arm(TimerName.L, self.settings.transaction_timeout, now)
        elif status >= 300:
            self.state = State.COMPLETED
            if not self.reliable:
                self._arm(TimerName.G, self._interval, now)
            self._arm(TimerName.H, self.settings.transaction_timeout, now)
        return events

    def matches_to_tag(self, request: Request) -> bool:
        # An ACK carries the tag of the final response, so before one was
        # sent no ACK can belong here.
        if request.method == "ACK":
            return self._final_to_tag is not None and request.to_tag == self._final_to_tag
        return super().matches_to_tag(request)

    def _timer_fired(self, name: str, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        if name == TimerName.G:
            self._interval = min(self._interval * 2, self.settings.t2)
            self._arm(TimerName.G, self._interval, now)
            events.extend(self._resend())
        elif name == TimerName.H:
            events.append(TimedOut(name))
            self._terminate(events)
        else:  # I in Confirmed, L in Accepted
            self._terminate(events)
        return events


class NonInviteServerTransaction(ServerTransaction):
    kind = "non_invite_server"

    __slots__ = ()

    def __init__(
        self, table: TransactionTable, key: Hashable, request: Request, destination: Destination
    ) -> None:
        super().__init__(table, key, request, destination, State.TRYING)

    def receive_request(self, request: Request, now: float) -> list[TransactionEvent]:
        # Trying has nothing to re-send yet, so the retransmission is dropped.
        return [] if self.state is State.TRYING else self._resend()

    def respond(self, response: Response, now: float) -> list[TransactionEvent]:
        if self.state is not State.TRYING and self.state is not State.PROCEEDING:
            return []  # Completed discards further responses from the TU
        events: list[TransactionEvent] = [self._send(response)]
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            delay = self.settings.timer_j(self.reliable)
            self._linger(TimerName.J, delay, now, events)
        return events

    def _timer_fired(self, name: str, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        self._terminate(events)  # J is its only timer
        return events
