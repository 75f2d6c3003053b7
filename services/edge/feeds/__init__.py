"""What keeps the edge's in-memory caches current: bus events in, a store read to (re)load.

The rule: a feed (bus and store I/O) lives here; the cache it keeps is I/O-free
and lives beside the core that reads it per message (`services.edge.location`'s
`Directory`, `services.edge.destinations`' `DispatchSets`, the routing cache's
gateway health, the policies' `Guard` and `BlockList`).
"""
