"""What every transaction shares: state, timers in the table's queue, termination.

A transaction keeps the handles of its armed timers so that re-arming or
leaving a state cancels the old expiry; a timer that fires is therefore always
one the current state still wants.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import TYPE_CHECKING, ClassVar

from shared.sip.message import Request
from shared.sip.timers import TimerHandle, TimerSettings
from shared.sip.transaction.events import (
    TERMINATED,
    TRANSPORT_FAILED,
    State,
    TimerName,
    TransactionEvent,
)
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from shared.sip.transaction.table import TransactionTable

TimerEntry = tuple["Transaction", TimerName]


class Transaction(abc.ABC):
    """Base of the four RFC 3261 §17 state machines; see the subclasses."""

    kind: ClassVar[str]
    """Metric label: invite_client, non_invite_client, invite_server, non_invite_server."""

    __slots__ = ("_table", "_timers", "destination", "key", "request", "state")

    def __init__(
        self,
        table: TransactionTable,
        key: Hashable,
        request: Request,
        destination: Destination,
        state: State,
    ) -> None:
        self._table = table
        self._timers: dict[TimerName, TimerHandle[TimerEntry]] = {}
        self.key = key
        self.request = request
        self.destination = destination
        self.state = state

    @property
    def settings(self) -> TimerSettings:
        return self._table.settings

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def armed(self) -> dict[TimerName, float]:
        """Armed timers and their deadlines, for tests and diagnostics."""
        return {name: handle.deadline for name, handle in self._timers.items()}

    def on_timer(self, name: TimerName, now: float) -> list[TransactionEvent]:
        """Called by the table when `name` expires; a timer no longer armed is ignored."""
        if self._timers.pop(name, None) is None:
            return []
        return self._timer_fired(name, now)

    def transport_error(self) -> list[TransactionEvent]:
        """The transport could not send for this transaction: tell the TU and end."""
        if self.state is State.TERMINATED:
            return []
        events: list[TransactionEvent] = [TRANSPORT_FAILED]
        self._terminate(events)
        return events

    @abc.abstractmethod
    def _timer_fired(self, name: TimerName, now: float) -> list[TransactionEvent]:
        """React to an armed timer of the current state."""

    def _arm(self, name: TimerName, delay: float, now: float) -> None:
        self._disarm(name)
        self._timers[name] = self._table.timers.schedule(now + delay, (self, name))

    def _disarm(self, *names: TimerName) -> None:
        for name in names:
            handle = self._timers.pop(name, None)
            if handle is not None:
                self._table.timers.cancel(handle)

    def _linger(
        self, name: TimerName, delay: float, now: float, events: list[TransactionEvent]
    ) -> None:
        """Wait `delay` in the current state before ending; on streams the wait is zero."""
        if delay > 0:
            self._arm(name, delay, now)
        else:
            self._terminate(events)

    def _terminate(self, events: list[TransactionEvent]) -> None:
        for handle in self._timers.values():
            self._table.timers.cancel(handle)
        self._timers.clear()
        self.state = State.TERMINATED
        self._table.discard(self)
        events.append(TERMINATED)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state} {self.key!r}>"
