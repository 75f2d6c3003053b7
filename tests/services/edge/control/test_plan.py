"""Which BYEs a hang-up sends from the accounting service's attempts, and why none (409)."""

from __future__ import annotations

from typing import Any

import pytest

from services.edge.control.plan import NotLiveError, hangup_byes
from tests.services.edge.control.test_byes import CALLEE, CALLER, SIX


def attempt(state: str = "open", answered: bool = True, legs: bool = True) -> dict[str, Any]:
    dialog = {
        "to_tag": "gw",
        "edge": "edge-a",
        "cseq": 3,
        "caller": CALLER.model_dump(mode="json"),
        "callee": CALLEE.model_dump(mode="json"),
    }
    return {
        "state": state,
        "answer_at": 1.0 if answered else None,
        "dialog": dialog if legs else None,
    }


def test_an_open_answered_call_gets_a_bye_to_each_party() -> None:
    byes = hangup_byes([attempt()], SIX)
    assert [(b.side, b.request.call_id, b.request.cseq.seq) for b in byes] == [
        ("caller", "call-1", 100_003),
        ("callee", "CMH-masked", 100_003),
    ]


def test_only_the_open_answered_attempts_are_ended() -> None:
    byes = hangup_byes([attempt("complete"), attempt(answered=False), attempt()], SIX)
    assert len(byes) == 2


@pytest.mark.parametrize(
    ("items", "says"),
    [
        ([attempt("complete")], "ended already"),
        ([attempt(answered=False)], "not answered yet"),
        ([attempt(legs=False)], "did not record its legs"),
        (
            [{**attempt(), "dialog": {"to_tag": "cmb2b-a", "b2bua_leg_call_id": "leg-b"}}],
            "B2BUA call: only the edge's engine",
        ),
        ([{**attempt(), "dialog": {"cseq": 1}}], "incomplete"),
        ([{**attempt(), "dialog": {**attempt()["dialog"], "cseq": None}}], "incomplete"),
        (
            [{**attempt(), "dialog": {**attempt()["dialog"], "caller": {"call_id": 5}}}],
            "incomplete",
        ),
        (
            [
                {
                    **attempt(),
                    "dialog": {
                        **attempt()["dialog"],
                        "callee": {**CALLEE.model_dump(), "address": "h:1"},
                    },
                }
            ],
            "callee's recorded leg is unusable",
        ),
    ],
)
def test_nothing_to_hang_up_says_why(items: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(NotLiveError, match=says):
        hangup_byes(items, SIX)
