"""The dispatcher's Prometheus metrics; labels are operator-configured sets and URIs (bounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DESTINATION_ATTEMPTS = Counter(
    "callmesh_edge_destination_attempts",
    "Requests forwarded to a dispatcher destination",
    ["set", "destination"],
)
DESTINATION_FAILURES = Counter(
    "callmesh_edge_destination_failures",
    "Dispatcher destination failures (timeout, 5xx, transport)",
    ["set", "destination"],
)
ACTIVE_CALLS = Gauge(
    "callmesh_edge_destination_active_calls",
    "Calls this worker set up on a destination and has not seen end (least_calls input)",
    ["set", "destination"],
)
TARGET_STATE = Gauge(
    "callmesh_edge_target_state",
    "The health state this edge routes with, per health target: 1 for the current state",
    ["target", "state"],
)
