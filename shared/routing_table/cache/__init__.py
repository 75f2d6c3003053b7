"""The edge's routing cache: an in-memory, event-fed copy of the routing table.

The proxy calls :meth:`RoutingCache.lookup` per call (no I/O, flat cost) and
:meth:`RoutingCache.translate` to apply a dialplan first; the health service
feeds :class:`GatewayHealth` so routes carry each gateway's state.
"""

from shared.routing_table.cache.cache import RoutingCache
from shared.routing_table.cache.health import GatewayHealth, GatewayState
from shared.routing_table.cache.lookups import IndexRoutes
from shared.routing_table.cache.route import GatewayChoice, Route

__all__ = [
    "GatewayChoice",
    "GatewayHealth",
    "GatewayState",
    "IndexRoutes",
    "Route",
    "RoutingCache",
]
