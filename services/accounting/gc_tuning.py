"""Garbage-collector settings for ``python -m services.accounting``.

Why: the service takes what waits on the queue in batches (up to 512
messages, tens of thousands of call events alive at once while they are
committed), and CPython's default thresholds (a collection every 700 new
objects) make the cyclic collector walk that heap, and every module and
model loaded at start, again and again: draining 4,000 answered calls on
PostgreSQL took ~0.8 s of its ~3 s of CPU in the collector, ~0.15 s with
these settings (``bench.accounting``).  Events, rows and records are freed by
reference counting once their batch is acknowledged, so collecting rarely
loses nothing; ``gc.freeze()`` moves what was loaded at start out of the
collector's sight for good.  In the all-in-one the edge's settings govern the
process.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 10


def tune_for_batches() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
