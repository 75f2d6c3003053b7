"""What crosses the bus: event payloads, RPC messages, queue and routing-key names.

One module per owning service (`registrar`, `routing`, `health`, `edge`, with
`calls` for the edge's call events and `protection` for its protection state),
so publisher and consumer
read one definition.  An event's `schema_version` (`shared.bus.Event`) travels
with it.  Redis layouts read by more than one service live with their owner's
library: `shared.registrar.layout`, `shared.routing_table.store`,
`shared.health.store`, `shared.protection.store`.
"""
