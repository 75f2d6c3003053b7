"""What HEP capture counts, for `/metrics`: packets sent, and dropped by reason.

Reasons are a fixed set (`queue_full`, `down`, `slow`, `unencodable`), so no peer
can grow the series.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY

from shared.counters import IntCounter, IntCounters, IntMetrics

METRICS: Final = IntMetrics()
SENT: Final = METRICS.add(
    IntCounter("callmesh_hep_sent", "HEP packets written to a collector (one per destination)")
)
DROPPED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_hep_dropped",
        "HEP packets not sent: queue_full (the bounded queue was full), down (no connection "
        "to the collector), slow (its connection's buffer is full), unencodable (over 64 KiB, "
        "or an address that is not an IP)",
        ("reason",),
    )
)
REGISTRY.register(METRICS)
