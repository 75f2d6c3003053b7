"""The media relay policy toward a gateway: its own, else its rule's, else the subscriber
domain's, else the default."""

from __future__ import annotations

import pytest

from shared.routing_table.index import RoutingIndex
from shared.routing_table.media import media_relay_for, parse_domain_policies
from shared.routing_table.model import Gateway, Rule


def test_gateway_over_rule_over_default() -> None:
    index = RoutingIndex()
    index.put("gateway", "own", Gateway(address="sip:192.0.2.1", media_relay="never"))
    index.put("gateway", "plain", Gateway(address="sip:192.0.2.2"))
    index.put("rule", "r", Rule(prefix="1", gateways=("own", "plain"), media_relay="always"))
    index.put("rule", "bare", Rule(prefix="2", gateways=("plain",)))
    assert media_relay_for(index, "r", "own", "nat") == ("never", "gateway")
    assert media_relay_for(index, "r", "plain", "nat") == ("always", "rule")
    assert media_relay_for(index, "bare", "plain", "nat") == ("nat", "default")
    assert media_relay_for(index, None, None, "never") == ("never", "default")
    index.put("rule", "r", Rule(prefix="1", gateways=("plain",)))  # put again without it
    assert media_relay_for(index, "r", "plain", "nat") == ("nat", "default")
    index.put("rule", "r", Rule(prefix="1", gateways=("plain",), media_relay="never"))
    index.remove("rule", "r")
    assert index.rule_media == {}


def test_a_subscriber_domain_decides_only_where_gateway_and_rule_set_nothing() -> None:
    index = RoutingIndex()
    index.put("gateway", "own", Gateway(address="sip:192.0.2.1", media_relay="never"))
    index.put("gateway", "plain", Gateway(address="sip:192.0.2.2"))
    index.put("rule", "r", Rule(prefix="1", gateways=("plain",), media_relay="never"))
    index.put("rule", "bare", Rule(prefix="2", gateways=("own", "plain")))
    assert media_relay_for(index, "bare", "plain", "nat", "always") == ("always", "domain")
    assert media_relay_for(index, "bare", "own", "nat", "always") == ("never", "gateway")
    assert media_relay_for(index, "r", "plain", "nat", "always") == ("never", "rule")
    assert media_relay_for(index, None, None, "nat", "never") == ("never", "domain")
    assert media_relay_for(index, None, None, "nat", None) == ("nat", "default")


def test_domain_policies_are_read_strictly() -> None:
    assert parse_domain_policies("") == {}
    assert parse_domain_policies(" Retail.Example = always, pbx.example=never ") == {
        "retail.example": "always",
        "pbx.example": "never",
    }
    for bad in ("retail.example", "=always", "retail.example=maybe", "a=nat,A=never"):
        with pytest.raises(ValueError):
            parse_domain_policies(bad)
