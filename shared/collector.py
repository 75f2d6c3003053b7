"""The cyclic garbage collector set for a long-running service process.

Why: CPython collects every 700 new objects and, every so often, walks the
whole heap, every module and model loaded at start included; a service that
keeps many objects alive at once (a proxy's transactions, the accounting
service's batches) pays that walk over and over.  Its objects are freed by
reference counting, so collecting rarely loses nothing, and ``gc.freeze()``
takes what was loaded at start out of the collector's sight for good.  Each
service says how rarely (its own thresholds and the figures behind them).
"""

from __future__ import annotations

import gc


def collect_rarely(thresholds: tuple[int, int, int]) -> None:
    """Freeze what the process holds now, then collect at ``thresholds`` (``gc.set_threshold``).

    Call once the process has loaded what it keeps for its lifetime.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
