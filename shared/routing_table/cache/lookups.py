"""What the proxy asks of a routing table per call: a number's route, a dialplan's answer.

Its own module, apart from `cache.py` (which follows Redis and the bus), so that it is
compiled with the edge's hot path (`deploy.extensions.HOT`): the compiled proxy called this
lookup as Python once per call.  Interpreted subclasses stay allowed: the cache itself, the
sans-IO proxy tests' table and the proxy-core benchmark's.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from shared.routing_table.cache.health import GatewayHealth
from shared.routing_table.cache.route import Route
from shared.routing_table.index import RoutingIndex


@mypyc_attr(allow_interpreted_subclasses=True)
class IndexRoutes:
    """What the proxy asks of a routing table: lookups over an index, with gateway health.

    `RoutingCache` keeps its index current from Redis and the bus; the sans-IO
    proxy tests and the proxy-core benchmark fill one by hand, and so take the
    same lookup path as the edge.
    """

    def __init__(self) -> None:
        self.index = RoutingIndex()
        self.health = GatewayHealth()

    def lookup(self, number: str, group: str = "0") -> Route | None:
        """The route for ``number`` in ``group`` with each gateway's health; no I/O."""
        index = self.index
        found = index.locate(number, group)
        if found is None:
            return None
        where, digits, targets = found
        return Route(where, digits, number, index.resolve(targets), self.health)

    def translate(self, dialplan_id: str, number: str) -> str:
        """``number`` through dialplan ``dialplan_id``; ``KeyError`` if there is no such plan."""
        return self.index.translate(dialplan_id, number)
