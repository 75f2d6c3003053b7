"""What one random read costs by the size of the structure read: a big table's floor.

A lookup in a four-rule table reads memory that stays in the CPU's nearest
cache; in a million-rule table, whatever its layout, at least one read per
lookup lands in a structure of megabytes, at a random place, and costs what
this machine's caches and memory make it cost. Measured here so the routing
benchmark can print that floor beside the lookup figures.

The reads are dependent (each position is the word read before, a random
cycle through the array), as a lookup's are: independent reads in a loop
overlap in the CPU and show less than their latency.
"""

from __future__ import annotations

import random
import statistics
import time
from array import array

SIZES = (80, 2 << 20, 4 << 20, 8 << 20, 32 << 20)
"""Bytes: ten words (always cached), then the sizes a million-entry index spans."""


def random_read_ns(size: int, reads: int = 100_000, repeats: int = 5) -> float:
    """Median ns of one dependent read of a random word of a ``size``-byte array, loop
    included."""
    order = list(range(size // 8))
    random.Random(size).shuffle(order)
    words = array("q", bytes(size))
    for here, there in zip(order, order[1:] + order[:1], strict=True):
        words[here] = there
    costs = []
    for _ in range(repeats):
        position = order[0]
        started = time.perf_counter_ns()
        for _ in range(reads):
            position = words[position]
        costs.append((time.perf_counter_ns() - started) / reads)
    return statistics.median(costs)


def read_costs() -> dict[int, float]:
    """:func:`random_read_ns` for each of :data:`SIZES`."""
    return {size: random_read_ns(size) for size in SIZES}


def describe(costs: dict[int, float]) -> str:
    """One line: each size with its extra cost over the smallest (an always-cached read)."""
    base = costs[min(costs)]
    parts = [
        f"{_size(size)} {cost - base:+.0f}"
        for size, cost in sorted(costs.items())
        if size != min(costs)
    ]
    return f"random read, ns over a cached one ({base:.0f} ns): " + ", ".join(parts)


def over_budget(costs: dict[int, float], budget_ns: float) -> str:
    """One line: from which structure size one random read alone costs more than the budget
    (15% of a 4-rule lookup); the index of a million prefixes spans about 14 MiB."""
    base = costs[min(costs)]
    over = [size for size, cost in sorted(costs.items()) if cost - base > budget_ns]
    where = f"from {_size(over[0])} up" if over else "at none of the sizes measured"
    return f"15% of the 4-rule lookup is {budget_ns:.0f} ns: one random read exceeds it {where}"


def _size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} B"
