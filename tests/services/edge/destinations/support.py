"""A sans-IO proxy whose routing table has a rule to dispatcher set ``farm``, then gateway 2."""

from __future__ import annotations

from services.edge.destinations import ActiveCalls, DispatchSets, SetSelector
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.dispatcher import DispatcherSet
from shared.routing_table.model import Rule
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import EDGE, Run, Table

BOX1 = Destination("udp", "198.51.100.31", 5060)
BOX2 = Destination("udp", "198.51.100.32", 5060)
BOX1_URI = f"sip:{BOX1.host}"
BOX2_URI = f"sip:{BOX2.host}:5060"


def farm(algorithm: str = "priority") -> DispatcherSet:
    return DispatcherSet.model_validate(
        {
            "algorithm": algorithm,
            "destinations": [{"uri": BOX1_URI, "priority": 1}, {"uri": BOX2_URI}],
        }
    )


def farm_run(dispatcher_set: DispatcherSet | None = None) -> tuple[Run, DispatchSets, ActiveCalls]:
    """A proxy routing ``1407…`` to ``@farm`` then gateway 2 (GW2 of ``test_core``)."""
    table = Table()
    table.index.put("rule", "r1407", Rule(prefix="1407", gateways=("@farm", "2")))
    sets = DispatchSets()
    sets.put("farm", dispatcher_set or farm())
    calls = ActiveCalls()
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    router = NumberRouter(table, sets=SetSelector(sets, calls))
    proxy = Proxy(interfaces, router, ProxyTimers(fr=2.0, fr_inv=10.0), calls=calls)
    return Run(proxy, table), sets, calls
