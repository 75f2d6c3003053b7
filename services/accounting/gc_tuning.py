"""Garbage-collector settings for ``python -m services.accounting``.

Why: the service takes what waits on the queue in batches (up to 512
messages, tens of thousands of call events alive at once while they are
committed), and with CPython's default thresholds the collector walked that
heap, and every module and model loaded at start, again and again: draining
4,000 answered calls on PostgreSQL took ~0.8 s of its ~3 s of CPU in the
collector, ~0.15 s with these settings (``bench.accounting``).  In the
all-in-one the edge's settings govern the process.
"""

from __future__ import annotations

from shared.collector import collect_rarely

THRESHOLDS = (10_000, 10, 10)
"""A young collection every 10,000 new objects (700 by default); the older ones as usual."""


def tune_for_batches() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    collect_rarely(THRESHOLDS)
