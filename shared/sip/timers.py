"""SIP timer values (RFC 3261 §17, Table 4; RFC 6026) and a caller-driven timer queue.

Nothing here reads a clock: the caller passes `now` (any monotonic seconds),
which keeps the transaction layer sans-IO and lets tests step time exactly (forward:
`TimerQueue` counts a `now` gone back as the latest one).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_push: Final = heapq.heappush
_pop: Final = heapq.heappop
_replace: Final = heapq.heapreplace
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
    """Timers in one FIFO lane per delay, a small heap of the lanes' fronts, and a dict from
    timer to item.

    Why lanes and not one heap of every timer: an edge at 1,000 calls a second per worker
    holds some 200,000 timers (three of 32 s a call, and the cancelled ones not yet
    reached), and each one that fired or was skipped cost a heap pop down its 17 levels,
    each a tuple comparison on entries scattered through memory (perf at the wire:
    `heapq`'s sift and the comparisons it calls took ~4 % of the edge's CPU).  But timers
    are set by a few delays (T1's multiples, 64*T1, T4, Timer C, the failover time) from the
    queue's own clock, which only moves forward, so the timers of one delay are scheduled in
    deadline order: each lane stays sorted by appending, and only its front is compared, in
    a heap of a few entries.  Timers fire by deadline, then by when they were scheduled.

    The queue's clock is the latest `now` it was given, and an earlier `now` counts as that
    one, because the caller's clock does go back: the edge times each datagram by its
    kernel arrival, and its bursts come in turn from sockets (the shared one, the worker's
    own, the hand-on one) whose queues lag by different amounts.  Inserting those timers in
    order (`bisect` on a deque of some 100,000 entries, which walks its blocks) took ~6.5 %
    of the edge's CPU at 2000 calls a second, and more as the queues grew.  Such a timer
    fires later by as far as the caller's clock went back (the edge's arrival times are at
    most `MAX_QUEUED_AGE` behind its loop), never sooner than its delay after a `now` it was
    given.  So a caller must not pass a `now` ahead of its clock: every later timer would
    wait for it.

    No handle object per timer and nothing that points back at the owner: the owner
    keeps the `Timer` number, and the lanes hold tuples of plain numbers, so the cyclic
    GC neither tracks them nor finds cycles through them.  Cancelling drops the item at
    once (O(1)); its lane entry is skipped when reached, and the lanes are compacted when
    such entries outnumber live ones, so a burst of transactions that end early does not
    pin memory for 64*T1.  An item is never None.
    """

    __slots__ = ("_clock", "_entries", "_fronts", "_items", "_lanes", "_next")

    def __init__(self) -> None:
        self._lanes: dict[float, deque[tuple[float, Timer]]] = {}
        """Delay → `(deadline, timer)` in deadline order; only lanes that hold entries."""
        self._fronts: list[tuple[float, Timer, float]] = []
        """A heap of `(deadline, timer, delay)`: each lane's front entry, one per lane."""
        self._items: dict[Timer, T] = {}
        self._entries = 0
        """Entries in the lanes, cancelled ones included."""
        self._next: Timer = 0
        self._clock = float("-inf")
        """The latest `now` given to `schedule`: the lanes' deadlines are counted from it."""

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._items)

    def schedule(self, now: float, delay: float, item: T) -> Timer:
        """Fire `item` at `now + delay`, or `delay` after the latest `now` given if later."""
        timer = self._next
        self._next = timer + 1
        self._items[timer] = item
        self._entries += 1
        clock = self._clock = max(self._clock, now)
        deadline = clock + delay
        lane = self._lanes.get(delay)
        if lane is None:
            self._lanes[delay] = deque([(deadline, timer)])
            _push(self._fronts, (deadline, timer, delay))
        else:
            lane.append((deadline, timer))
        return timer

    def cancel(self, timer: Timer) -> None:
        """Forget `timer`; one already fired or cancelled is ignored."""
        items = self._items
        if items.pop(timer, None) is None:
            return
        if self._entries > 64 and self._entries > 2 * len(items):
            self._compact()

    def deadline(self, timer: Timer) -> float:
        """When a live `timer` expires (a scan: for tests and diagnostics); KeyError for one
        fired or cancelled."""
        if timer not in self._items:
            raise KeyError(timer)
        return next(
            deadline for lane in self._lanes.values() for deadline, entry in lane if entry == timer
        )

    def next_deadline(self) -> float | None:
        """When the earliest live timer expires, for the adapter's `call_at`."""
        fronts = self._fronts
        items = self._items
        while fronts:
            deadline, timer, _delay = fronts[0]
            if timer in items:
                return deadline
            self._advance()
        return None

    def pop_due(self, now: float) -> list[tuple[Timer, T]]:
        """`(timer, item)` of each live timer whose deadline is ≤ `now`, earliest first."""
        due: list[tuple[Timer, T]] = []
        fronts = self._fronts
        items = self._items
        while fronts and fronts[0][0] <= now:
            timer = self._advance()
            item = items.pop(timer, None)
            if item is not None:
                due.append((timer, item))
        return due

    def _advance(self) -> Timer:
        """Take the earliest entry off its lane; the lane's next entry becomes its front."""
        delay = self._fronts[0][2]
        lane = self._lanes[delay]
        timer = lane.popleft()[1]
        self._entries -= 1
        if lane:
            deadline, following = lane[0]
            _replace(self._fronts, (deadline, following, delay))
        else:
            _pop(self._fronts)
            del self._lanes[delay]
        return timer

    def _compact(self) -> None:
        """Drop the cancelled entries from every lane."""
        items = self._items
        lanes: dict[float, deque[tuple[float, Timer]]] = {}
        for delay, lane in self._lanes.items():
            kept = deque([entry for entry in lane if entry[1] in items])
            if kept:
                lanes[delay] = kept
        self._lanes = lanes
        self._entries = len(items)
        self._rebuild_fronts()

    def _rebuild_fronts(self) -> None:
        self._fronts = [(lane[0][0], lane[0][1], delay) for delay, lane in self._lanes.items()]
        heapq.heapify(self._fronts)
