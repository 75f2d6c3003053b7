"""The event loop every Callmesh process runs: uvloop, on a clock as fine as the kernel's.

Why not uvloop's own clock: its `loop.time()` is libuv's loop time in whole milliseconds,
truncated (measured here: 0 to 1 ms behind `time.monotonic()`, 0.5 ms on average), and
the edge times every message by the loop's clock: a UDP datagram's kernel stamp is turned
to it by an offset read against it at each wake-up, and a call's events go back to wall
time by another. Each reading was off by its own fraction of a millisecond, so two messages
a few tenths of a millisecond apart could come out in either order (a CI run's gateway,
answering 503 0.3 ms after the call was routed, had its answer stamped before it). On
`time.monotonic()` (the same CLOCK_MONOTONIC libuv reads, to the nanosecond) they keep
their order. uvloop's timers follow (`call_at` takes its delay from `time()`), still in
whole milliseconds from libuv's own clock: one may run up to about 1.5 ms before its
deadline on this clock (0.5 ms on uvloop's own); the edge's one loop timer then finds
less due and is set again (`services.edge.runtime.loop_timer`), and a timeout ends that
much sooner.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class PreciseLoop(uvloop.Loop):
    """uvloop, its `time()` the monotonic clock unrounded (a builtin: no Python frame)."""

    time = staticmethod(time.monotonic)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`uvloop.run` on a `PreciseLoop`."""
    return uvloop.run(main, loop_factory=PreciseLoop)
