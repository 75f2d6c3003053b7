"""Dialplan translation: exact and regex rules, back-references, first match wins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.routing_table.dialplan import CompiledDialplan
from shared.routing_table.model import Dialplan, DialplanRule

FRANCE = Dialplan(
    rules=(
        DialplanRule(match_op="exact", match="112", replace="+33112"),
        DialplanRule(match=r"^00([1-9][0-9]+)$", replace=r"+\1"),
        DialplanRule(match=r"^0([1-9][0-9]{8})$", replace=r"+33\1"),
        DialplanRule(match=r"^\+", subst=r"^\+(.*)$", replace=r"+\1"),
    )
)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("112", "+33112"),
        ("0044207123456", "+44207123456"),
        ("0142345678", "+33142345678"),
        ("+14075551234", "+14075551234"),
        ("999", None),
    ],
)
def test_translate(number: str, expected: str | None) -> None:
    assert CompiledDialplan(FRANCE).translate(number) == expected


def test_bad_regex_and_missing_group_are_rejected() -> None:
    with pytest.raises(ValidationError, match="bad regular expression"):
        DialplanRule(match="(")
    with pytest.raises(ValidationError, match="refers to group 2"):
        DialplanRule(match=r"^(1)", replace=r"\2")
    with pytest.raises(ValidationError, match="subst is only for regex"):
        DialplanRule(match_op="exact", match="1", subst="1")


OVERLAPPING = Dialplan(
    rules=(
        DialplanRule(match_op="exact", match="0800", replace="first-exact"),
        DialplanRule(match=r"^08", replace="second-regex"),
        DialplanRule(match=r"^0", subst=r"^0(.*)$", replace=r"third-subst-\1"),
        DialplanRule(match_op="exact", match="0800", replace="fourth-exact"),
        DialplanRule(match=r"^0", replace="fifth-regex"),
        DialplanRule(match=r"^0", subst=r"^0(.*)$", replace=r"sixth-subst-\1"),
    )
)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("0800", "first-exact"),  # every rule matches: the first one
        ("0812", "second-regex12"),  # all but the exact rules: the first regex
        ("0112", "third-subst-112"),  # the subst rule before the later regex and subst
    ],
)
def test_the_first_matching_rule_wins_not_the_last(number: str, expected: str) -> None:
    assert CompiledDialplan(OVERLAPPING).translate(number) == expected


def test_a_rule_rewrites_its_first_match_only() -> None:
    plan = Dialplan(
        rules=(
            DialplanRule(match="1", replace="9"),
            DialplanRule(match="2", subst="3", replace="4"),
        )
    )
    assert CompiledDialplan(plan).translate("111") == "911"
    assert CompiledDialplan(plan).translate("2333") == "2433"


def test_an_exact_rule_is_no_regex() -> None:
    plan = Dialplan(rules=(DialplanRule(match_op="exact", match="1.", replace="x"),))
    assert CompiledDialplan(plan).translate("12") is None
    assert CompiledDialplan(plan).translate("1.") == "x"
