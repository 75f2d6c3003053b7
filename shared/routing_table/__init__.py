"""The routing table itself: records, their Redis layout, the pure matching index, the cache.

Owned by the routing service (the writer); the edges (the readers) and the
health service (which probes the table's gateways) use it too, so the
table's schema and its semantics live in one place: `model` (records),
`store` (Redis layout, snapshots), `packed`/`changes` (what crosses the
bus), `index` and `prefixes` (the I/O-free lookup), `manipulation` and
`topology` (per-target rules the edge applies), `cache` (an edge's in-memory
copy that follows the ``routing.…`` events).
"""
