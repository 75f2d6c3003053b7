"""The property tests' example budget (tests/examples.py)."""

from __future__ import annotations

import pytest

from tests.examples import examples


def test_the_whole_suite_draws_every_example() -> None:
    assert examples(300, {}) == 300
    assert examples(300, {"CALLMESH_TEST_EXAMPLES": "1"}) == 300


def test_the_quick_run_draws_its_share_but_never_too_few() -> None:
    assert examples(1500, {"CALLMESH_TEST_EXAMPLES": "0.25"}) == 375
    assert examples(40, {"CALLMESH_TEST_EXAMPLES": "0.25"}) == 20
    assert examples(10, {"CALLMESH_TEST_EXAMPLES": "0.25"}) == 10


@pytest.mark.parametrize("value", ["", "a quarter", "0", "-1", "2"])
def test_a_bad_share_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="CALLMESH_TEST_EXAMPLES"):
        examples(300, {"CALLMESH_TEST_EXAMPLES": value})
