"""A route's hop order under health states, and the dispatcher sets it names."""

from __future__ import annotations

from shared.routing_table.cache import GatewayHealth, IndexRoutes, Route
from shared.routing_table.model import Gateway, Rule


def route(health: GatewayHealth, targets: tuple[str, ...] = ("1", "2", "3", "4")) -> Route:
    routes = IndexRoutes()
    routes.health = health
    for gateway_id in ("1", "2", "3", "4"):
        routes.index.put("gateway", gateway_id, Gateway(address=f"sip:192.0.2.{gateway_id}"))
    routes.index.put("rule", "r", Rule(prefix="1", gateways=targets))
    found = routes.lookup("1555")
    assert found is not None
    return found


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
