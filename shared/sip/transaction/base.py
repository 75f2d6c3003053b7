"""What every transaction shares: state, its request, timers in the table's queue, termination.

A transaction that only absorbs retransmissions can hold its request as its
bytes (`hold_request_as_bytes`): a finished call then leaves no message objects
behind for the collector, and what reads the request later parses it again.

A transaction keeps the numbers of its armed timers (in the table's one
queue, which maps each to the transaction: no handle objects, no cycles) so
that re-arming or leaving a state cancels the old expiry; a timer that fires
is therefore always one the current state still wants.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import TYPE_CHECKING, ClassVar, cast

from shared.sip.message import Request, read_again
from shared.sip.timers import Timer, TimerSettings
from shared.sip.transaction.events import (
    TERMINATED,
    TRANSPORT_FAILED,
    State,
    TransactionEvent,
)
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from shared.sip.transaction.table import TransactionTable


class Transaction:
    """Base of the four RFC 3261 §17 state machines; see the subclasses.

    Not an `abc.ABC`: compiled by mypyc, the subclasses of an ABC share its subclass cache,
    so ``isinstance(client, ServerTransaction)`` once answered False made
    ``isinstance(client, ClientTransaction)`` False too (and a True, True): the B2BUA lost
    its unACKed 2xx's timeout that way.  `abc.abstractmethod` still marks what each
    subclass must define (for mypy).
    """

    kind: ClassVar[str]
    """Metric label: invite_client, non_invite_client, invite_server, non_invite_server."""

    __slots__ = ("_armed", "_held", "_request", "_table", "destination", "key", "state")

    def __init__(
        self,
        table: TransactionTable,
        key: Hashable,
        request: Request,
        destination: Destination,
        state: State,
    ) -> None:
        self._table = table
        self._armed: dict[str, Timer] = {}
        self.key = key
        self._request: Request | None = request
        self._held = b""
        self.destination = destination
        self.state = state

    @property
    def request(self) -> Request:
        """The request this transaction carries; parsed again from its bytes if it was held
        as them (`hold_request_as_bytes`), which only a late retransmission or a
        diagnostic asks for."""
        request = self._request
        if request is None:
            request = self._request = cast("Request", read_again(self._held))
            self._held = b""
        return request

    @property
    def parsed_request(self) -> Request | None:
        """The request, unless it is held as bytes: for a reader that can do without it
        rather than parse it again (the proxy relaying a retransmitted 2xx)."""
        return self._request

    def hold_request_as_bytes(self) -> None:
        """Keep the request as its bytes alone while the transaction only absorbs
        retransmissions: no message object, no lists of lines and keys for the cyclic
        collector to walk, a single buffer instead of one per header line."""
        request = self._request
        if request is not None:
            self._held = request.to_bytes()
            self._request = None

    @property
    def settings(self) -> TimerSettings:
        return self._table.settings

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def armed(self) -> dict[str, float]:
        """Armed timers and their deadlines, for tests and diagnostics."""
        timers = self._table.timers
        return {name: timers.deadline(timer) for name, timer in self._armed.items()}

    def on_timer(self, timer: Timer, now: float) -> list[TransactionEvent]:
        """Called by the table when `timer` expires; one no longer armed is ignored."""
        armed = self._armed
        for name, armed_timer in armed.items():
            if armed_timer == timer:
                del armed[name]
                return self._timer_fired(name, now)
        return []

    def transport_error(self) -> list[TransactionEvent]:
        """The transport could not send for this transaction: tell the TU and end."""
        if self.state is State.TERMINATED:
            return []
        events: list[TransactionEvent] = [TRANSPORT_FAILED]
        self._terminate(events)
        return events

    @abc.abstractmethod
    def _timer_fired(self, name: str, now: float) -> list[TransactionEvent]:
        """React to an armed timer of the current state."""

    def _arm(self, name: str, delay: float, now: float) -> None:
        timers = self._table.timers
        armed = self._armed
        if name in armed:
            timers.cancel(armed[name])
        armed[name] = timers.schedule(now, delay, self)

    def _disarm(self, *names: str) -> None:
        armed = self._armed
        for name in names:
            timer = armed.pop(name, None)
            if timer is not None:
                self._table.timers.cancel(timer)

    def _linger(self, name: str, delay: float, now: float, events: list[TransactionEvent]) -> None:
        """Wait `delay` in the current state before ending; on streams the wait is zero.

        What the request is kept as meanwhile is `_rest`'s: a server's as its bytes; a
        client's as it is, for its TU, which reads it on the final response and then says
        what to keep (`hold_request_as_bytes`, or `Request.forget_parsed`).
        """
        if delay > 0:
            self._rest()
            self._arm(name, delay, now)
        else:
            self._terminate(events)

    def _rest(self) -> None:
        """The request as it is while lingering: a client's TU reads it right after, on the
        final response that ended the transaction (the proxy pops its own Via against it,
        and writes the callee's leg from it), and then says what to keep of it."""

    def _terminate(self, events: list[TransactionEvent]) -> None:
        timers = self._table.timers
        for timer in self._armed.values():
            timers.cancel(timer)
        self._armed.clear()
        self.state = State.TERMINATED
        self._table.discard(self)
        events.append(TERMINATED)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state} {self.key!r}>"
