"""Matching semantics of the routing index (drouting): pure, no I/O."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.routing_table.compiled import CompiledRule, GatewayTarget
from shared.routing_table.index import RoutingIndex, rule_at
from shared.routing_table.model import (
    Carrier,
    Dialplan,
    DialplanRule,
    Gateway,
    Kind,
    Limits,
    Manipulation,
    Peer,
    Rule,
)
from shared.routing_table.timewindow import TimeWindow
from shared.routing_table.topology import TargetTopology
from tests.examples import examples

MONDAY_NOON = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
SUNDAY_NOON = datetime(2024, 6, 9, 12, 0, tzinfo=UTC)


def seeded(now: datetime = MONDAY_NOON, seed: int = 7) -> RoutingIndex:
    index = RoutingIndex(clock=lambda: now, rng=random.Random(seed))
    index.put("gateway", "1", Gateway(address="sip:198.51.100.7:5060", description="PSTN 1"))
    index.put("gateway", "2", Gateway(address="sip:198.51.100.8:5060", description="PSTN 2"))
    for rule_id, prefix, gateways in (
        ("r1407", "1407", ("1", "2")),
        ("r44", "44", ("2",)),
        ("r33", "33", ("1", "2")),
        ("r91", "91", ("2", "1")),
    ):
        index.put("rule", rule_id, Rule(prefix=prefix, gateways=gateways))
    return index


def match(
    index: RoutingIndex, number: str, group: str = "0"
) -> tuple[CompiledRule, tuple[GatewayTarget, ...]] | None:
    """The rule that routes `number` and its gateways in order, as the edge reads them."""
    found = index.locate(number, group)
    if found is None:
        return None
    where, digits, targets = found
    return rule_at(where, digits), index.resolve(targets)


def route(index: RoutingIndex, number: str, group: str = "0") -> tuple[str, list[str]] | None:
    found = match(index, number, group)
    return None if found is None else (found[0].id, [gw.id for gw in found[1]])


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("14075551234", ("r1407", ["1", "2"])),
        ("+442071234567", ("r44", ["2"])),
        ("33123456789", ("r33", ["1", "2"])),
        ("919876543210", ("r91", ["2", "1"])),
    ],
)
def test_seed_table(number: str, expected: tuple[str, list[str]]) -> None:
    assert route(seeded(), number) == expected


def test_no_route_without_default() -> None:
    assert route(seeded(), "4912345") is None
    assert route(seeded(), "14075551234", group="9") is None


def test_default_route_is_the_empty_prefix() -> None:
    index = seeded()
    index.put("rule", "default", Rule(prefix="", gateways=("1",)))
    assert route(index, "4912345") == ("default", ["1"])
    assert route(index, "14075551234") == ("r1407", ["1", "2"])


def test_longest_prefix_wins_over_shorter_even_with_lower_priority() -> None:
    index = seeded()
    index.put("rule", "r1", Rule(prefix="1", priority=100, gateways=("2",)))
    index.put("rule", "r140755", Rule(prefix="140755", priority=-5, gateways=("2",)))
    assert route(index, "14075551234") == ("r140755", ["2"])
    assert route(index, "14085551234") == ("r1", ["2"])


def test_highest_priority_among_one_prefix() -> None:
    index = seeded()
    index.put("rule", "low", Rule(prefix="1407", priority=-1, gateways=("2",)))
    index.put("rule", "high", Rule(prefix="1407", priority=10, gateways=("2", "1")))
    assert route(index, "14075551234") == ("high", ["2", "1"])
    index.remove("rule", "high")
    assert route(index, "14075551234") == ("r1407", ["1", "2"])
    index.remove("rule", "r1407")
    assert route(index, "14075551234") == ("low", ["2"])


def test_groups_are_separate_tables() -> None:
    index = seeded()
    index.put("rule", "vip", Rule(group="5,6", prefix="1407", gateways=("2",)))
    assert route(index, "14075551234", "5") == ("vip", ["2"])
    assert route(index, "14075551234", "6") == ("vip", ["2"])
    assert route(index, "14075551234", "0") == ("r1407", ["1", "2"])
    assert route(index, "4420", "5") is None


def test_time_window_picks_the_rule_valid_now() -> None:
    weekend = TimeWindow(days=(6, 7))
    for now, expected in ((SUNDAY_NOON, "weekend"), (MONDAY_NOON, "r1407")):
        index = seeded(now)
        index.put("rule", "weekend", Rule(prefix="1407", priority=5, time=weekend, gateways=("2",)))
        assert route(index, "14075551234") == (
            expected,
            ["2"] if expected == "weekend" else ["1", "2"],
        )


def test_time_window_ruling_out_a_prefix_falls_back_to_shorter() -> None:
    index = seeded(SUNDAY_NOON)
    office = TimeWindow(days=(1, 2, 3, 4, 5), start="08:00", end="18:00", timezone="Europe/Paris")
    index.put("rule", "office", Rule(prefix="14075", time=office, gateways=("2",)))
    assert route(index, "14075551234") == ("r1407", ["1", "2"])


def test_time_window_across_midnight_and_zone() -> None:
    night = TimeWindow(start="22:00", end="06:00", timezone="Asia/Tokyo")
    assert night.matches(datetime(2024, 6, 3, 14, 0, tzinfo=UTC))  # 23:00 in Tokyo
    assert night.matches(datetime(2024, 6, 3, 20, 59, tzinfo=UTC))  # 05:59
    assert not night.matches(datetime(2024, 6, 3, 21, 0, tzinfo=UTC))  # 06:00
    bounded = TimeWindow(valid_from=datetime(2024, 6, 1), valid_until=datetime(2024, 7, 1))
    assert bounded.matches(MONDAY_NOON)
    assert not bounded.matches(datetime(2024, 7, 1, tzinfo=UTC))


def test_strip_and_prefix_per_gateway() -> None:
    index = seeded()
    index.put("gateway", "3", Gateway(address="sip:gw3.example.net", strip=1, prefix="0011"))
    index.put("rule", "r1", Rule(prefix="1", gateways=("3", "1")))
    found = match(index, "+18005550100")
    assert found is not None
    assert [gw.dial("+18005550100") for gw in found[1]] == ["00118005550100", "+18005550100"]


def test_ordered_carrier_expands_in_place_and_skips_disabled() -> None:
    index = seeded()
    index.put("gateway", "3", Gateway(address="sip:gw3.example.net", enabled=False))
    index.put("gateway", "4", Gateway(address="sip:gw4.example.net"))
    index.put("carrier", "acme", Carrier(gateways=("3", "4", "1")))
    index.put("rule", "r49", Rule(prefix="49", gateways=("2", "#acme", "1")))
    assert route(index, "4930123") == ("r49", ["2", "4", "1"])
    index.put("carrier", "acme", Carrier(gateways=("3", "4", "1"), use_first=True))
    assert route(index, "4930123") == ("r49", ["2", "4", "1"])
    index.put("carrier", "acme", Carrier(gateways=("1", "4"), use_first=True))
    assert route(index, "4930123") == ("r49", ["2", "1"])
    index.put("carrier", "acme", Carrier(gateways=("4",), enabled=False))
    assert route(index, "4930123") == ("r49", ["2", "1"])


def test_weighted_carrier_orders_in_proportion_to_weights() -> None:
    index = seeded(seed=11)
    index.put("gateway", "3", Gateway(address="sip:gw3.example.net"))
    index.put("carrier", "w", Carrier(gateways=("1=70", "2=20", "3=10"), weighted=True))
    index.put("rule", "r49", Rule(prefix="49", gateways=("#w",)))
    calls = 20_000
    firsts: Counter[str] = Counter()
    for _ in range(calls):
        _, gateways = route(index, "4930123") or ("", [])
        assert sorted(gateways) == ["1", "2", "3"]
        firsts[gateways[0]] += 1
    # Binomial standard deviation at these sizes is under 0.4 %; allow ~5 sigma.
    for gateway, share in (("1", 0.70), ("2", 0.20), ("3", 0.10)):
        assert abs(firsts[gateway] / calls - share) < 0.02, firsts


def test_weighted_use_first_gives_one_gateway_by_weight() -> None:
    index = seeded(seed=3)
    index.put("carrier", "w", Carrier(gateways=("1=1", "2=3"), weighted=True, use_first=True))
    index.put("rule", "r49", Rule(prefix="49", gateways=("#w",)))
    firsts = Counter((route(index, "49") or ("", []))[1][0] for _ in range(8000))
    assert abs(firsts["2"] / 8000 - 0.75) < 0.03
    assert set(firsts) == {"1", "2"}


def test_missing_gateway_is_skipped_and_gateway_changes_apply_at_once() -> None:
    index = seeded()
    index.remove("gateway", "1")
    assert route(index, "14075551234") == ("r1407", ["2"])
    index.put("gateway", "1", Gateway(address="sip:198.51.100.9"))
    found = match(index, "14075551234")
    assert found is not None
    assert found[1][0].address == "sip:198.51.100.9"


def test_replacing_a_rule_moves_it() -> None:
    index = seeded()
    index.put("rule", "r44", Rule(prefix="4420", gateways=("1",)))
    assert route(index, "4412345") is None
    assert route(index, "44201234") == ("r44", ["1"])
    assert len(index) == 4


def test_bulk_load_routes_like_one_by_one_puts() -> None:
    rng = random.Random(5)
    rules = {
        f"r{n}": Rule(
            group=rng.choice(("0", "0,5", "5")),
            prefix=f"{rng.randrange(10**4):04d}"[: rng.randint(0, 4)],
            priority=rng.randint(0, 2),
            gateways=rng.choice((("1",), ("2", "1"))),
        )
        for n in range(400)
    }
    bulk, reference = seeded(), seeded()
    for index in (bulk, reference):
        for rule_id in ("r1407", "r44", "r33", "r91"):
            index.remove("rule", rule_id)
    bulk.load_rules(bulk.compile_rule(rule_id, rule) for rule_id, rule in rules.items())
    for rule_id, rule in rules.items():
        reference.put("rule", rule_id, rule)
    numbers = [f"{rng.randrange(10**7):07d}" for _ in range(300)]
    for group in ("0", "5"):
        routed = [route(bulk, number, group) for number in numbers]
        assert routed == [route(reference, number, group) for number in numbers]
        assert all(routed)


def test_numbers_match_on_their_leading_digits_only() -> None:
    index = seeded()
    assert route(index, "+1407abc") == ("r1407", ["1", "2"])
    assert route(index, "14\u0660\u0660") is None
    assert route(index, "") is None


rule_specs = st.tuples(
    st.sampled_from(("0", "5", "0,5")),
    st.text(alphabet="019", max_size=5),
    st.integers(-1, 1),
    st.booleans(),
    st.sampled_from((("1",), ("2", "1"), ("@farm", "2"))),
)


def brute_force(rules: dict[str, Rule], number: str, group: str, now: datetime) -> str | None:
    """drouting by the letter: longest prefix, then priority (then id), first valid now."""
    digits = number.removeprefix("+")
    candidates = sorted(
        (
            (-len(rule.prefix), -rule.priority, rule_id)
            for rule_id, rule in rules.items()
            if group in rule.groups and digits.startswith(rule.prefix)
        ),
    )
    for _, _, rule_id in candidates:
        window = rules[rule_id].time
        if window is None or window.matches(now):
            return rule_id
    return None


@settings(max_examples=examples(150), deadline=None)
@given(
    st.dictionaries(st.sampled_from([f"r{n}" for n in range(40)]), rule_specs, max_size=40),
    st.lists(st.tuples(st.sampled_from([f"r{n}" for n in range(40)]), rule_specs | st.none())),
    st.lists(st.text(alphabet="019", max_size=8), min_size=1, max_size=30),
    st.sampled_from((MONDAY_NOON, SUNDAY_NOON)),
)
def test_lookups_match_brute_force_after_loads_and_edits(
    loaded: dict[str, tuple[str, str, int, bool, tuple[str, ...]]],
    edits: list[tuple[str, tuple[str, str, int, bool, tuple[str, ...]] | None]],
    numbers: list[str],
    now: datetime,
) -> None:
    """Ties, priorities, windows (falling back to shorter prefixes), groups, edits: the rule
    ``locate`` points at (read lazily, as routes do) is the brute-force matcher's."""

    def rule_of(spec: tuple[str, str, int, bool, tuple[str, ...]]) -> Rule:
        group, prefix, priority, weekend, targets = spec
        window = TimeWindow(days=(6, 7)) if weekend else None
        return Rule(group=group, prefix=prefix, priority=priority, time=window, gateways=targets)

    rules = {rule_id: rule_of(spec) for rule_id, spec in loaded.items()}
    index = seeded(now)
    for rule_id in ("r1407", "r44", "r33", "r91"):
        index.remove("rule", rule_id)
    index.load_rules(index.compile_rule(rule_id, rule) for rule_id, rule in rules.items())
    for rule_id, spec in edits:
        if spec is None:
            rules.pop(rule_id, None)
            index.remove("rule", rule_id)
        else:
            rules[rule_id] = rule_of(spec)
            index.put("rule", rule_id, rules[rule_id])
    for number in numbers:
        for group in ("0", "5"):
            expected = brute_force(rules, number, group, now)
            found = index.locate(number, group)
            rule = None if found is None else rule_at(found[0], found[1])
            assert (None if rule is None else rule.id) == expected
            if found is not None and rule is not None:
                assert found[2] is rule.targets
                assert found[2].sets == tuple(t[1:] for t in rules[rule.id].gateways if t[0] == "@")


# ----- what the mutation run found unguarded ----------------------------------------------


def test_a_dialplan_translates_until_it_is_removed() -> None:
    index = seeded()
    plan = Dialplan(rules=(DialplanRule(match=r"^0([1-9])", replace=r"+33\1"),))
    index.put("dialplan", "fr", plan)
    assert index.translate("fr", "0142345678") == "+33142345678"
    assert index.translate("fr", "999") == "999"  # no rule matches: the number as it is
    index.remove("dialplan", "fr")
    with pytest.raises(KeyError):
        index.translate("fr", "0142345678")


@pytest.mark.parametrize("kind", ["gateway", "carrier", "dialplan", "rule"])
def test_removing_what_is_not_there_is_no_error(kind: Kind) -> None:
    """Deletes are replayed (a cache catching up): a second one must be harmless."""
    index = seeded()
    index.remove(kind, "nope")
    assert route(index, "14075551234") == ("r1407", ["1", "2"])


def test_removing_a_gateway_takes_it_out_of_its_rules() -> None:
    index = seeded()
    index.remove("gateway", "1")
    assert route(index, "14075551234") == ("r1407", ["2"])


def test_targets_carry_their_gateway_and_carrier_settings() -> None:
    index = seeded()
    hidden = TargetTopology(mask_call_id=True)
    index.put("gateway", "3", Gateway(address="sip:198.51.100.9", topology_hiding=hidden))
    index.put("carrier", "acme", Carrier(gateways=("3",)))
    assert index.gateways["3"].topology == hidden
    assert index.gateways["1"].topology is None
    assert index.carriers["acme"].id == "acme"


def test_a_number_with_a_suffix_routes_by_its_leading_digits_nines_included() -> None:
    index = seeded()
    index.put("rule", "r99", Rule(prefix="9199", gateways=("1",)))
    assert route(index, "919912;ext=1") == ("r99", ["1"])
    assert index.locate("919912") is not None  # the default group is "0"


def test_a_gateway_strips_digits_after_a_plus_only() -> None:
    gateway = Gateway(address="sip:198.51.100.9", strip=2, prefix="00", attributes="pstn")
    target = GatewayTarget("9", gateway)
    assert (target.dial("14075551234"), target.dial("+14075551234")) == ("00075551234",) * 2
    assert target.attributes == "pstn"


def test_rules_naming_the_same_targets_share_one_list() -> None:
    index = seeded()
    found = [index.locate(number) for number in ("14075551234", "33123456789")]
    assert found[0] is not None and found[1] is not None
    assert found[0][2] is found[1][2]  # r1407 and r33 both name ("1", "2")


def test_a_removed_carrier_no_longer_routes_and_a_removed_rule_forgets_its_topology() -> None:
    index = seeded()
    index.put("carrier", "acme", Carrier(gateways=("1",)))
    hidden = TargetTopology(mask_call_id=True)
    index.put("rule", "r5", Rule(prefix="5", gateways=("#acme",), topology_hiding=hidden))
    assert route(index, "5551234") == ("r5", ["1"])
    assert index.rule_topology == {"r5": hidden}
    index.remove("carrier", "acme")
    assert route(index, "5551234") == ("r5", [])
    index.remove("rule", "r5")
    assert index.rule_topology == {}


def test_a_rule_put_again_without_topology_hiding_drops_it() -> None:
    index = seeded()
    hidden = TargetTopology(mask_call_id=True)
    index.put("rule", "r5", Rule(prefix="5", gateways=("1",), topology_hiding=hidden))
    index.put("rule", "r5", Rule(prefix="5", gateways=("1",)))
    assert index.rule_topology == {}


def test_a_rules_b2bua_mode_is_kept_beside_it_until_put_back_to_proxy_or_removed() -> None:
    index = seeded()
    index.put("rule", "r5", Rule(prefix="5", gateways=("1",), mode="b2bua"))
    index.put("rule", "r6", Rule(prefix="6", gateways=("1",), mode="b2bua"))
    assert index.b2bua_rules == {"r5", "r6"}
    index.put("rule", "r5", Rule(prefix="5", gateways=("1",)))
    index.remove("rule", "r6")
    assert index.b2bua_rules == set()


# ----- survivors of the second mutation run -------------------------------------------------


def test_removing_every_rule_of_a_shared_prefix_one_by_one_leaves_no_route() -> None:
    """Two rules on one prefix: the one left after the first removal is stored alone, so
    removing it too empties the prefix (a one-rule tuple left behind would not)."""
    index = seeded()
    index.put("rule", "low", Rule(prefix="44", priority=-1, gateways=("1",)))
    index.remove("rule", "r44")
    assert route(index, "442071234567") == ("low", ["1"])
    index.remove("rule", "low")
    assert route(index, "442071234567") is None
    assert len(index) == 3


def test_loading_rules_into_an_index_that_has_some_is_refused() -> None:
    index = seeded()
    with pytest.raises(ValueError, match=r"^load_rules needs an index without rules$"):
        index.load_rules([])


def test_a_prefix_whose_rule_has_no_window_is_answered_without_reading_the_clock() -> None:
    """The tag in the table answers it; only rules with a time window need the time."""
    reads: list[int] = []

    def clock() -> datetime:
        reads.append(1)
        return MONDAY_NOON

    index = RoutingIndex(clock=clock)
    index.put("gateway", "1", Gateway(address="sip:198.51.100.7:5060"))
    index.put("rule", "plain", Rule(prefix="1407", gateways=("1",)))
    index.put("rule", "office", Rule(prefix="33", time=TimeWindow(days=(1,)), gateways=("1",)))
    assert route(index, "14075551234") == ("plain", ["1"])
    assert reads == []
    assert route(index, "33123456789") == ("office", ["1"])  # positive control
    assert reads == [1]


def test_a_manipulation_applies_until_it_is_removed() -> None:
    index = seeded()
    body = {
        "scope": {"kind": "gateway", "id": "1"},
        "rules": [{"action": "add_header", "name": "X-Carrier", "value": "acme"}],
    }
    index.put("manipulation", "m1", Manipulation.model_validate(body))
    assert [rule_set.id for rule_set in index.manipulations.for_branch("0", None, "1")] == ["m1"]
    index.remove("manipulation", "m1")
    assert index.manipulations.for_branch("0", None, "1") == []
    assert len(index.manipulations) == 0


def test_the_index_knows_whether_any_record_carries_limits() -> None:
    """Asked per BYE (whether to free a call another edge admitted): kept, not searched."""
    index = RoutingIndex()
    capped = Gateway(address="sip:192.0.2.1", limits=Limits(max_concurrent=1))
    index.put("gateway", "g", capped)
    index.put("peer", "p", Peer(addresses=("10.0.0.0/8",)))
    assert index.limited
    index.put("gateway", "g", Gateway(address="sip:192.0.2.1"))  # its cap taken off
    assert not index.limited
    index.put("rule", "r", Rule(prefix="1", gateways=("g",), limits=Limits(max_cps=5)))
    assert index.limited
    index.remove("rule", "r")
    assert not index.limited
