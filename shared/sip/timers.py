"""SIP timer values (RFC 3261 §17, Table 4; RFC 6026) and a caller-driven timer queue.

Nothing here reads a clock: the caller passes `now` (any monotonic seconds),
which keeps the transaction layer sans-IO and lets tests step time exactly.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


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


class TimerHandle(Generic[T]):
    """One scheduled expiry; `cancel()` makes the queue skip it.

    A plain slotted class rather than a slotted dataclass: mypyc (`make fast`)
    cannot compile a generic dataclass with `slots=True`.
    """

    __slots__ = ("cancelled", "deadline", "item")

    def __init__(self, deadline: float, item: T, cancelled: bool = False) -> None:
        self.deadline = deadline
        self.item = item
        self.cancelled = cancelled


class TimerQueue(Generic[T]):
    """A min-heap of deadlines; `pop_due(now)` hands back what has expired.

    Cancellation is lazy (a flag) so it costs O(1) on the hot path; the heap
    is rebuilt when cancelled entries outnumber live ones, so a burst of
    transactions that end early does not pin memory for 64*T1.
    """

    __slots__ = ("_cancelled", "_heap", "_sequence")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle[T]]] = []
        self._sequence = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self._heap) - self._cancelled

    def schedule(self, deadline: float, item: T) -> TimerHandle[T]:
        handle = TimerHandle(deadline, item)
        heapq.heappush(self._heap, (deadline, next(self._sequence), handle))
        return handle

    def cancel(self, handle: TimerHandle[T]) -> None:
        if handle.cancelled:
            return
        handle.cancelled = True
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        """When the earliest live timer expires, for the adapter's `call_at`."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[T]:
        """Items whose deadline is ≤ `now`, earliest first."""
        due: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                self._cancelled -= 1
                continue
            handle.cancelled = True  # fired: a later cancel() is a no-op
            due.append(handle.item)
        return due
