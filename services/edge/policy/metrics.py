"""Metrics of the edge's policies (default registry, next to `services.edge.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter

SOURCES_BLOCKED = Counter(
    "callmesh_edge_sources_blocked", "Sources blocked for flooding (edge.source.blocked events)"
)
FLOOD_DROPPED = Counter("callmesh_edge_flood_dropped", "Requests dropped from blocked sources")
SCANNER_REQUESTS = Counter(
    "callmesh_edge_scanner_requests", "Requests of flagged scanners", ["action"]
)
CALL_LIMIT_REFUSED = Counter(
    "callmesh_edge_call_limit_refused", "Calls refused by a concurrent-call limit", ["limit"]
)
HOOK_CALLS = Counter(
    "callmesh_edge_routing_hook_calls", "Routing hook runs by outcome", ["outcome"]
)
MANIPULATED_BRANCHES = Counter(
    "callmesh_edge_manipulated_branches", "Branches changed by header manipulation rules"
)
AUTH_BLOCKED = Counter(
    "callmesh_edge_auth_blocked",
    "Accounts and sources blocked for failed authentications (edge.auth.blocked events)",
    ["kind"],
)
