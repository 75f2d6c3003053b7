"""Which destination of a dispatcher set each call goes to: the sets in memory, and the calls.

The sets themselves (algorithms, members) are `shared.dispatcher`'s; this is the
edge's side: its copy of them, the choice per call and its own call counts.
A routing rule targets set ``farm`` as ``"@farm"``. :class:`DispatchSets` is the
edge's copy of the sets and their destinations' health (fed by
:mod:`services.edge.feeds.health`); :class:`SetSelector` orders a route's sets' destinations
by each set's algorithm; :class:`ActiveCalls` counts the calls
on each destination for ``least_calls`` and watches the branches for failures.
"""

from services.edge.destinations.calls import ActiveCalls
from services.edge.destinations.selector import SetSelector
from services.edge.destinations.sets import DispatchSets

__all__ = ["ActiveCalls", "DispatchSets", "SetSelector"]
