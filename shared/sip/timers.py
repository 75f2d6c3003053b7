"""SIP timer values (RFC 3261 §17, Table 4; RFC 6026) and a caller-driven timer queue.

Nothing here reads a clock: the caller passes `now` (any monotonic seconds),
which keeps the transaction layer sans-IO and lets tests step time exactly.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_push: Final = heapq.heappush
_pop: Final = heapq.heappop
"""`heapq`'s functions held in the compiled module's statics: `heapq.heappush` is a module
lookup and an attribute lookup at every call (about 380 instructions, some thirty a call)."""


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 and the proxy's Timer C; every other timer derives from them.

    The RFC defaults suit the public Internet; a carrier trunk on a LAN may
    lower T1, which is why the values are configurable rather than constants.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_c: float = 180.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"need 0 < T1 <= T2, got T1={self.t1} T2={self.t2}")
        if self.t4 <= 0 or self.timer_c <= 0:
            raise ValueError("T4 and Timer C must be positive")

    @property
    def transaction_timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M (RFC 3261 Table 4, RFC 6026 §8.4)."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait for final-response retransmissions after ACKing one: ≥ 32 s on UDP."""
        return 0.0 if reliable else max(32.0, self.transaction_timeout)

    def timer_j(self, reliable: bool) -> float:
        """Timer J: 64*T1 on unreliable transports, zero on reliable ones (§17.2.2)."""
        return 0.0 if reliable else self.transaction_timeout

    def timer_i_or_k(self, reliable: bool) -> float:
        """Absorb stray ACKs (I) or response retransmissions (K): T4 on UDP."""
        return 0.0 if reliable else self.t4


Timer = int
"""A scheduled expiry, named by a number unique within its queue: what an owner keeps
to cancel it, or to recognise it when it fires."""


class TimerQueue(Generic[T]):
    """A min-heap of `(deadline, timer)` pairs of plain numbers and a dict from timer to item.

    No handle object per timer and nothing that points back at the owner:
    the owner keeps the `Timer` number, and the heap's tuples hold only
    numbers, so the cyclic GC neither tracks them nor finds cycles through
    them.  Cancelling drops the item at once (O(1)); its heap entry is
    skipped when reached, and the heap is rebuilt when such entries
    outnumber live ones, so a burst of transactions that end early does not
    pin memory for 64*T1.  An item is never None.
    """

    __slots__ = ("_heap", "_items", "_next")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Timer]] = []
        self._items: dict[Timer, T] = {}
        self._next: Timer = 0

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._items)

    def schedule(self, deadline: float, item: T) -> Timer:
        timer = self._next
        self._next = timer + 1
        self._items[timer] = item
        _push(self._heap, (deadline, timer))
        return timer

    def cancel(self, timer: Timer) -> None:
        """Forget `timer`; one already fired or cancelled is ignored."""
        items = self._items
        if items.pop(timer, None) is None:
            return
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * len(items):
            self._heap = [entry for entry in heap if entry[1] in items]
            heapq.heapify(self._heap)

    def deadline(self, timer: Timer) -> float:
        """When a live `timer` expires (a heap scan: for tests and diagnostics); KeyError
        for one fired or cancelled."""
        if timer not in self._items:
            raise KeyError(timer)
        return next(deadline for deadline, entry in self._heap if entry == timer)

    def next_deadline(self) -> float | None:
        """When the earliest live timer expires, for the adapter's `call_at`."""
        heap = self._heap
        items = self._items
        while heap and heap[0][1] not in items:
            _pop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[Timer, T]]:
        """`(timer, item)` of each live timer whose deadline is ≤ `now`, earliest first."""
        due: list[tuple[Timer, T]] = []
        heap = self._heap
        items = self._items
        while heap and heap[0][0] <= now:
            timer = _pop(heap)[1]
            item = items.pop(timer, None)
            if item is not None:
                due.append((timer, item))
        return due
