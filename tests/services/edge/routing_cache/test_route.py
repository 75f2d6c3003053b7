"""A route's hop order under health states, and the dispatcher sets it names."""

from __future__ import annotations

from services.edge.routing_cache import GatewayHealth, Route
from services.routing.table.index import RoutingIndex
from services.routing.table.model import Gateway, Rule


def route(health: GatewayHealth, targets: tuple[str, ...] = ("1", "2", "3", "4")) -> Route:
    index = RoutingIndex()
    for gateway_id in ("1", "2", "3", "4"):
        index.put("gateway", gateway_id, Gateway(address=f"sip:192.0.2.{gateway_id}"))
    index.put("rule", "r", Rule(prefix="1", gateways=targets))
    rule = index.find("1555")
    assert rule is not None
    return Route(rule, "1555", index.gateways_of(rule), health)


def test_probing_gateways_go_last_down_and_disabled_ones_are_dropped() -> None:
    health = GatewayHealth()
    health.set("1", "probing")
    health.set("2", "down")
    health.set("3", "disabled")
    assert [hop.gateway.id for hop in route(health).usable()] == ["4", "1"]
    health.set("1", "up")
    health.forget("2")
    assert [hop.gateway.id for hop in route(health).usable()] == ["1", "2", "4"]


def test_dispatcher_sets_are_named_in_order() -> None:
    found = route(GatewayHealth(), ("@farm", "@spare", "1"))
    assert found.sets == ("farm", "spare")
    assert [hop.gateway.id for hop in found.hops] == ["1"]
    assert route(GatewayHealth()).sets == ()
