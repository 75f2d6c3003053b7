"""Wall time against the event loop's clock: the offset between them, measured so that a
preempted process does not skew it.

Why it matters: the edge runs on the loop's monotonic clock and turns the kernel's receive
stamps (wall time) to it, and its call events back to wall time. An offset read as
``time.time() - loop.time()`` by a process preempted between the two reads is off by the
time it was away, milliseconds on two busy cores, and so is every message stamped with it:
enough to put a gateway's answer before the request it answered. Reading the loop's clock
before and after the wall clock bounds the error by half their gap; a wide gap (preempted)
is read again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

OFFSET_READS: Final = 3
"""Bracketed reads at most per measurement: a preemption rarely hits two in a row."""
TIGHT_GAP: Final = 20e-6
"""A bracket this narrow is taken at once (two clock reads take well under a microsecond)."""


def wall_offset(
    loop_time: Callable[[], float], wall_time: Callable[[], float] = time.time
) -> float:
    """Wall time minus the loop's clock, from the tightest of up to `OFFSET_READS` brackets
    (the first within `TIGHT_GAP`)."""
    best_gap, best = math.inf, 0.0
    for _ in range(OFFSET_READS):
        before = loop_time()
        wall = wall_time()
        after = loop_time()
        gap = after - before
        if gap < best_gap:
            best_gap, best = gap, wall - (before + after) / 2
            if gap <= TIGHT_GAP:
                break
    return best
