"""The worker's one loop timer: a single `call_at` handle, on a tick, moved only when earlier.

Why a tick: the core's deadlines (its transactions' timers, steps of T1 = 500 ms and more)
fall at every instant, so at 1,000 calls a second a timer set to each was re-armed and fired
thousands of times a second, each a `call_at`, a cancel and an `expire` call; on a tick it
fires at most 200 times a second, every deadline due by then expiring together, none more
than a tick late.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Final

TIMER_TICK: Final = 0.005
"""Seconds the timer is rounded up to."""


class LoopTimer:
    """Calls `fire` once at the tick at or after the earliest deadline it was `arm`ed with."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[], None]) -> None:
        self._loop = loop
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.at: float | None = None
        """The tick it fires at; None: not armed (also while `fire` runs, so it may re-arm)."""

    def arm(self, deadline: float) -> None:
        """Fire by `deadline`'s tick; an earlier one already armed stands; closed: nothing."""
        if self._closed:
            return
        tick = math.ceil(deadline / TIMER_TICK) * TIMER_TICK
        tick = tick if tick >= deadline else tick + TIMER_TICK  # (the division's rounding)
        at = self.at
        if at is not None and at <= tick:
            return
        if self._handle is not None:
            self._handle.cancel()
        self.at = tick
        self._handle = self._loop.call_at(tick, self._due)

    def close(self) -> None:
        """Disarm it for good: the worker is stopping, a late round trip must not wake it."""
        self._closed = True
        self.cancel()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.at = None

    def _due(self) -> None:
        self._handle = None
        self.at = None
        self._fire()
