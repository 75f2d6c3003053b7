"""Proxy or B2BUA: the gateway's own mode, else its rule's, else proxy."""

from __future__ import annotations

from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Gateway, Rule
from shared.routing_table.modes import carried_by_b2bua, mode_for


def table() -> RoutingIndex:
    index = RoutingIndex()
    index.put("gateway", "plain", Gateway(address="sip:192.0.2.1"))
    index.put("gateway", "b2b", Gateway(address="sip:192.0.2.2", mode="b2bua"))
    index.put("gateway", "prox", Gateway(address="sip:192.0.2.3", mode="proxy"))
    index.put("rule", "r1", Rule(prefix="1", gateways=("plain", "b2b", "prox"), mode="b2bua"))
    index.put("rule", "r2", Rule(prefix="2", gateways=("plain", "b2b", "prox")))
    return index


def test_the_gateways_mode_wins_over_the_rules_and_proxy_is_the_default() -> None:
    index = table()
    assert [mode_for(index, "r1", g) for g in ("plain", "b2b", "prox")] == [
        ("b2bua", "rule"),
        ("b2bua", "gateway"),
        ("proxy", "gateway"),
    ]
    assert [mode_for(index, "r2", g) for g in ("plain", "b2b", "prox")] == [
        ("proxy", "default"),
        ("b2bua", "gateway"),
        ("proxy", "gateway"),
    ]
    assert mode_for(index, None, None) == ("proxy", "default")  # a dispatcher destination
    assert carried_by_b2bua(index, "r2", "b2b") and not carried_by_b2bua(index, "r1", "prox")


def test_a_set_destinations_mode_is_its_sets_and_the_rules_does_not_reach_it() -> None:
    index = table()
    assert mode_for(index, "r1", None, "b2bua") == ("b2bua", "set")
    assert mode_for(index, "r2", None, "proxy") == ("proxy", "set")
    assert mode_for(index, "r1", None) == ("proxy", "default")
    assert carried_by_b2bua(RoutingIndex(), None, None, "b2bua")  # no b2bua rule or gateway
    assert not carried_by_b2bua(index, "r1", None)


def test_a_gateways_mode_is_forgotten_when_it_is_put_back_without_one_or_removed() -> None:
    index = table()
    assert index.b2bua_gateways == {"b2b"}
    index.put("gateway", "b2b", Gateway(address="sip:192.0.2.2"))
    assert index.b2bua_gateways == set()
    assert mode_for(index, "r2", "b2b") == ("proxy", "default")
    index.put("gateway", "plain", Gateway(address="sip:192.0.2.1", mode="b2bua"))
    index.remove("gateway", "plain")
    index.remove("rule", "r1")
    assert not index.b2bua_gateways and not index.b2bua_rules
    assert not carried_by_b2bua(index, "r1", "prox")
