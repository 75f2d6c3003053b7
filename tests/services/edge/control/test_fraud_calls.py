"""Which live calls a fraud block ends: the block's account and prefix, nobody else's call."""

from __future__ import annotations

from typing import Any

import pytest

from services.edge.control.fraud_calls import BlockedCalls
from shared.contracts.fraud import FraudCritical, FraudWarning

MALLORY = "subscriber:mallory@example.com"


def critical(account: str = MALLORY, **fields: Any) -> FraudCritical:
    values: dict[str, Any] = {
        "rule": "premium",
        "account": account,
        "prefix": "1900",
        "metric": "concurrent",
        "value": 2,
        "threshold": 2,
        "window": 0,
        "block": "b1",
        "blocked": "account",
        "call_id": "c9",
        "source": "edge-a",
    }
    return FraudCritical.model_validate({**values, **fields})


def call(**fields: Any) -> dict[str, Any]:
    """An open call as ``/v1/open-calls`` lists it."""
    values: dict[str, Any] = {
        "call_id": "c1",
        "caller": "sip:mallory@Example.com:5060;transport=udp",
        "callee": "19005550001",
        "peer": None,
        "answer_at": 1.0,
    }
    return {**values, **fields}


def test_a_level_that_sets_no_block_ends_nothing() -> None:
    warning = FraudWarning.model_validate(
        critical().model_dump() | {"block": None, "blocked": None}
    )
    assert BlockedCalls.of(warning) is None


def test_an_account_block_holds_every_call_of_the_account_and_no_one_elses() -> None:
    blocked = BlockedCalls.of(critical())
    assert blocked == BlockedCalls(MALLORY, None)
    assert blocked.query() == {"caller": "mallory"}
    assert blocked.holds(call())
    assert blocked.holds(call(callee="+33123456789"))  # every destination
    assert not blocked.holds(call(caller="sip:mallory@other.example"))  # same user, other host
    assert not blocked.holds(call(caller="sip:eve@example.com"))
    assert not blocked.holds(call(peer="acme"))  # a peer's call is the peer's account
    assert not blocked.holds(call(caller="not a uri"))
    assert not blocked.holds(call(caller=None))


def test_a_prefix_block_holds_the_accounts_calls_to_that_prefix_only() -> None:
    blocked = BlockedCalls.of(critical(blocked="prefix"))
    assert blocked == BlockedCalls(MALLORY, "1900")
    assert blocked.holds(call())
    assert not blocked.holds(call(callee="19765550001"))
    assert not blocked.holds(call(callee=None))


def test_a_peer_block_holds_the_peers_calls() -> None:
    blocked = BlockedCalls.of(critical("peer:acme"))
    assert blocked is not None
    assert blocked.query() == {"peer": "acme"}
    assert blocked.holds(call(peer="acme", caller="sip:anyone@customer.example"))
    assert not blocked.holds(call(peer="other"))
    assert not blocked.holds(call())


@pytest.mark.parametrize(
    ("account", "query"),
    [
        ("subscriber:+1 (555) 010@example.com", {"caller": "+1555010"}),  # as records normalise
        ("subscriber:tel:+15550100", {"caller": "+15550100"}),
        ("subscriber:@example.com", None),  # no user: no column names it
        ("peer:", None),
        ("nobody", None),
    ],
)
def test_the_open_calls_are_asked_by_the_column_naming_the_account(
    account: str, query: dict[str, str] | None
) -> None:
    assert BlockedCalls(account, None).query() == query
