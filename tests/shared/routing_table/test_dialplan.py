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
        DialplanRule(match="^(1)", replace=r"\2")
    with pytest.raises(ValidationError, match="subst is only for regex"):
        DialplanRule(match_op="exact", match="1", subst="1")
