"""Fraud rules: what a rule may say (levels ordered, at least one threshold), and which rules
a call falls under (its account's and every caller's, the longest prefix of each)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.fraud.rules import FraudIndex, FraudRuleBody, RuleMatch

ALICE = "subscriber:alice@example.com"


def rule(**fields: object) -> FraudRuleBody:
    return FraudRuleBody.model_validate({"prefixes": ["1900"], **fields})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "at least one of"),
        ({"sequential": {}}, "set warning, critical or both"),
        ({"sequential": {"warning": 3, "critical": 3}}, "warning must be below critical"),
        ({"sequential": {"warning": 1}, "caller": "subscriber:alice"}, "caller"),
        ({"sequential": {"warning": 1}, "prefixes": []}, "prefixes"),
    ],
)
def test_a_rule_must_make_sense(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_levels_are_the_scripts_arguments_in_metric_order() -> None:
    found = rule(concurrent={"critical": 4}, minutes_per_day={"warning": 60, "critical": 120})
    assert found.levels() == (0, 0, 0, 4, 0, 0, 60, 120)


def test_a_call_falls_under_its_accounts_rules_and_every_callers() -> None:
    index = FraudIndex()
    index.put(
        "mine", rule(caller=ALICE, prefixes=["1", "1900", "19005"], sequential={"warning": 2})
    )
    index.put("all", rule(caller="any", prefixes=["44"], block="prefix", sequential={"warning": 2}))
    index.put("off", rule(caller="any", enabled=False, sequential={"warning": 2}))
    found = index.query("c", ALICE, "19001234")
    assert found is not None
    assert [(m.rule_id, m.prefix, m.block) for m in found.matches] == [
        ("mine", "1900", "none"),  # the longest of its prefixes
        ("all", None, "prefix"),  # watches the caller, not this number: blocks only
    ]
    other = index.query("c", "peer:acme", "4412")
    assert other is not None and other.matches == (
        RuleMatch("all", "44", (0, 0, 0, 0, 2, 0, 0, 0), "prefix"),
    )
    index.remove("all")
    assert index.query("c", "peer:acme", "4412") is None
    assert len(index) == 2 and [rule_id for rule_id, _ in index.items()] == ["mine", "off"]


def test_an_empty_prefix_covers_every_number() -> None:
    index = FraudIndex()
    index.put("every", rule(caller=ALICE, prefixes=[""], calls_per_minute={"critical": 100}))
    found = index.query("c", ALICE, "5551234")
    assert found is not None and found.matches[0].prefix == ""


def test_a_subscribers_host_is_compared_in_lower_case() -> None:
    """The edge writes a call's account with its From host in lower case; the user is kept."""
    found = rule(caller="subscriber:Alice@Example.COM", sequential={"warning": 2})
    assert found.caller == "subscriber:Alice@example.com"
