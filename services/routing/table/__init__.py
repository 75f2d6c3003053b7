"""The routing table itself: records, their Redis layout, and the pure matching index.

Both the routing service (the writer) and the edges (the readers) use this
package, so the table's schema and its semantics live in one place.
"""
