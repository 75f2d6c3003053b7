"""The rtpengine client's Prometheus metrics (default registry, served by the edge's ``/metrics``).

Labels are bounded: commands outside ``protocol.COMMANDS`` count as ``other``,
instances are the configured ones, error kinds a fixed set.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "callmesh_rtpengine_requests", "ng requests sent (retransmissions not counted)", ["command"]
)
ERRORS = Counter(
    "callmesh_rtpengine_errors",
    "ng requests that failed: timeout (no reply after the retries), refused (result error), "
    "malformed (a reply datagram that is not ng), unavailable (no live instance)",
    ["kind", "instance"],
)
RETRANSMISSIONS = Counter(
    "callmesh_rtpengine_retransmissions", "ng requests sent again after a timeout", ["instance"]
)
LATENCY = Histogram(
    "callmesh_rtpengine_latency_seconds",
    "From an ng request's first send to its reply",
    ["command"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
UP = Gauge("callmesh_rtpengine_up", "1 while an instance answers its pings", ["instance"])
