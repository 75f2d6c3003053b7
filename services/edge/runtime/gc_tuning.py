"""Garbage-collector settings for a proxy process.

Why: a proxy keeps tens of thousands of transactions alive for 32 s each
(Timers D, J, L, M at 64*T1), and CPython's default thresholds (700 new
objects) make the cyclic collector walk that whole heap many times per
second: measured on the proxy core at 1000 calls/s, it took ~45% of the CPU
(715 µs per call with the defaults, 384 µs with these).  Transactions are
freed by reference counting when they end, so collecting rarely loses
nothing; `gc.freeze()` also moves everything loaded at start (modules, the
routing index) out of the collector's sight for good.
"""

from __future__ import annotations

from shared.collector import collect_rarely

THRESHOLDS = (100_000, 50, 1_000)
"""A young collection every 100,000 new objects (700 by default); the older generations after
50 and 1,000 of the younger one's (10 and 10 by default)."""


def tune_for_proxy() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    collect_rarely(THRESHOLDS)
