"""The packed rules snapshot keeps a rule's rare fields (media relay policy, limits, topology
hiding), and reads lines without them."""

from __future__ import annotations

from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Limits, Rule
from shared.routing_table.packed import pack_rules, unpack_rules
from shared.routing_table.topology import TargetTopology


def test_a_rules_media_relay_survives_packing_and_old_lines_have_none() -> None:
    rules = [
        ("r1", Rule(prefix="1", gateways=("gw",), media_relay="always")),
        ("r2", Rule(prefix="2", gateways=("gw",))),
    ]
    chunk = pack_rules(rules)
    assert chunk.decode().splitlines()[1].count("\t") == 5  # no media: the old six fields
    index = RoutingIndex()
    assert [rule.id for rule in unpack_rules(chunk, index)] == ["r1", "r2"]
    assert index.rule_media == {"r1": "always"}


def test_a_rules_limits_survive_packing_with_or_without_a_media_policy() -> None:
    limits = Limits(max_concurrent=5, max_cps=2)
    rules = [
        ("r1", Rule(prefix="1", gateways=("gw",), limits=limits)),
        ("r2", Rule(prefix="2", gateways=("gw",), media_relay="never", limits=limits)),
        ("r3", Rule(prefix="3", gateways=("gw",), media_relay="nat")),
    ]
    index = RoutingIndex()
    assert [rule.id for rule in unpack_rules(pack_rules(rules), index)] == ["r1", "r2", "r3"]
    assert index.rule_limits == {"r1": limits, "r2": limits}
    assert index.rule_media == {"r2": "never", "r3": "nat"}


def test_a_rules_topology_hiding_survives_packing_with_or_without_the_others() -> None:
    """A hidden rule loaded from the snapshot (an edge's start) must stay hidden."""
    hiding = TargetTopology.model_validate({"mask_call_id": True})
    rules = [
        ("r1", Rule(prefix="1", gateways=("gw",), topology_hiding=hiding)),
        ("r2", Rule(prefix="2", gateways=("gw",), media_relay="nat", topology_hiding=hiding)),
        ("r3", Rule(prefix="3", gateways=("gw",), limits=Limits(max_cps=1))),
    ]
    index = RoutingIndex()
    assert [rule.id for rule in unpack_rules(pack_rules(rules), index)] == ["r1", "r2", "r3"]
    assert index.rule_topology == {"r1": hiding, "r2": hiding}
    assert index.rule_media == {"r2": "nat"}
    assert index.rule_limits == {"r3": Limits(max_cps=1)}


def test_a_rules_b2bua_mode_survives_packing_alone_or_after_the_others() -> None:
    """An edge loading its rules from the snapshot must carry a b2bua rule's calls as one."""
    hiding = TargetTopology.model_validate({"mask_call_id": True})
    rules = [
        ("r1", Rule(prefix="1", gateways=("gw",), mode="b2bua")),
        ("r2", Rule(prefix="2", gateways=("gw",), topology_hiding=hiding, mode="b2bua")),
        ("r3", Rule(prefix="3", gateways=("gw",), media_relay="nat", mode="proxy")),
    ]
    chunk = pack_rules(rules)
    assert chunk.decode().splitlines()[2].count("\t") == 6  # the default mode adds nothing
    index = RoutingIndex()
    assert [rule.id for rule in unpack_rules(chunk, index)] == ["r1", "r2", "r3"]
    assert index.b2bua_rules == {"r1", "r2"}
    assert index.rule_topology == {"r2": hiding}
    assert index.rule_media == {"r3": "nat"}
