"""Fraud screening through the sans-IO core: each watched call's `Screen` answered by the real
scripts (`shared.fraud.store`) on the embedded store (fakeredis), before the call is routed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.edge.proxy.actions import Action, Screen
from shared.fraud.store import FraudStore
from shared.routing_table.model import FraudRule
from shared.settings import Settings
from shared.sip.message import Request, Response, parse_message
from shared.store.embedded import open_embedded
from tests.services.edge.policy.support import (
    GW1,
    INSIDE,
    Run,
    invite,
    policy_run,
    requests_to,
    responses_to,
)

ALICE = "subscriber:alice@10.0.0.5"
"""The account of `invite()`'s caller (From: alice@10.0.0.5, no peer)."""


@pytest.fixture
async def fraud(tmp_path: Path) -> AsyncIterator[FraudStore]:
    store = await open_embedded(Settings(namespace="t", data_dir=str(tmp_path)))
    yield FraudStore(store)
    await store.close()


def call(n: int, number: str = "19005551234") -> bytes:
    return (
        invite(number)
        .replace(b"z9hG4bKin1", f"z9hG4bKin1-{n}".encode())
        .replace(b"Call-ID: ", f"Call-ID: {n}-".encode())
    )


async def send(run: Run, fraud: FraudStore | None, data: bytes) -> list[Action]:
    """The core's actions for `data`, its `Screen` answered by `fraud` (None: unknown)."""
    actions = run.send(data)
    done: list[Action] = []
    while actions:
        action = actions.pop(0)
        if isinstance(action, Screen):
            verdict = None if fraud is None else await fraud.check(action.query)
            actions += run.proxy.screened(action.server, verdict, run.now)
        else:
            done.append(action)
    return done


def refusal(actions: list[Action]) -> Response:
    [answer] = [r for r in responses_to(actions, INSIDE) if r.status >= 300]
    return answer


def watched(**fields: object) -> FraudRule:
    body = {"caller": ALICE, "prefixes": ["1900"], "calls_per_minute": {"critical": 2}}
    return FraudRule.model_validate(body | fields)


async def test_a_blocked_account_is_refused_403_before_routing(fraud: FraudStore) -> None:
    run = policy_run(topology=False)
    run.table.put("fraud_rule", "premium", watched(block="account"))
    assert requests_to(await send(run, fraud, call(1)), GW1)  # the positive control
    tripped = refusal(await send(run, fraud, call(2)))
    assert tripped.status == 403
    block = (await fraud.blocks())[0]["id"]
    assert tripped.header("reason") == (
        f'SIP;cause=403;text="fraud block {block}: account {ALICE}"'
    )
    # The account is blocked: a number outside the rule's prefixes, and one without any
    # route (the screen comes before routing: 403, not 404), are refused too.
    assert refusal(await send(run, fraud, call(3, "14075551234"))).status == 403
    assert refusal(await send(run, fraud, call(4, "5550000"))).status == 403
    await fraud.unblock(block)
    assert requests_to(await send(run, fraud, call(5, "14075551234")), GW1)


async def test_a_blocked_prefix_refuses_only_its_numbers(fraud: FraudStore) -> None:
    run = policy_run(topology=False)
    run.table.put("fraud_rule", "premium", watched(block="prefix"))
    await send(run, fraud, call(1))
    refused = refusal(await send(run, fraud, call(2)))
    assert f"prefix 1900 {ALICE}" in (refused.header("reason") or "")
    assert requests_to(await send(run, fraud, call(3, "14075551234")), GW1)


async def test_a_rule_without_a_block_only_counts(fraud: FraudStore) -> None:
    run = policy_run(topology=False)
    run.table.put("fraud_rule", "premium", watched())
    for n in range(4):
        assert requests_to(await send(run, fraud, call(n)), GW1)
    (counts,) = await fraud.counts([("premium", ALICE)])
    assert counts.calls_per_minute == 4


async def test_callers_no_rule_watches_take_no_round_trip(fraud: FraudStore) -> None:
    run = policy_run(topology=False)
    assert not [a for a in run.send(call(1)) if isinstance(a, Screen)]
    run.table.put("fraud_rule", "other", watched(caller="subscriber:bob@10.0.0.5"))
    actions = run.send(call(2))
    assert not [a for a in actions if isinstance(a, Screen)]
    assert requests_to(actions, GW1)
    run.table.put("fraud_rule", "any", watched(caller="any", enabled=False))
    assert not [a for a in run.send(call(3)) if isinstance(a, Screen)]  # disabled
    run.table.put("fraud_rule", "any", watched(caller="any"))
    [screen] = [a for a in run.send(call(4)) if isinstance(a, Screen)]
    assert (screen.query.account, screen.query.number) == (ALICE, "19005551234")


async def test_an_unknown_verdict_lets_the_call_through(fraud: FraudStore) -> None:
    """Redis away: the call goes on unscreened (fail open, as the shared limits do)."""
    run = policy_run(topology=False)
    run.table.put("fraud_rule", "premium", watched(block="account"))
    for n in range(3):
        assert requests_to(await send(run, None, call(n)), GW1)


def cancel_of(data: bytes) -> bytes:
    """The caller's CANCEL of the INVITE `data` (RFC 3261 §9.1: its top Via, From, To, Call-ID,
    CSeq number)."""
    invite = parse_message(data)
    assert isinstance(invite, Request)
    return (
        f"CANCEL {invite.uri_text} SIP/2.0\r\nVia: {invite.headers('via')[0]}\r\n"
        f"From: {invite.header('from')}\r\nTo: {invite.header('to')}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: {invite.cseq.seq} CANCEL\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_a_call_cancelled_while_it_is_screened_is_not_routed() -> None:
    run = policy_run(topology=False)
    run.table.put("fraud_rule", "premium", watched())
    [screen] = [a for a in run.send(call(1)) if isinstance(a, Screen)]
    cancelled = run.send(cancel_of(call(1)))
    assert [r.status for r in responses_to(cancelled, INSIDE)] == [200, 487]
    assert run.proxy.screened(screen.server, None, run.now) == []
