"""Each algorithm's distribution, ordering and failover, counted over many calls."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from typing import get_args

import pytest
from pydantic import ValidationError

from shared.dispatcher import Call, Dispatcher, DispatcherSet, SetMember, destination_target_id
from shared.dispatcher.model import Algorithm

A, B, C = "sip:10.0.0.1:5060", "sip:10.0.0.2:5060", "sip:10.0.0.3:5060"


def farm(*destinations: SetMember, algorithm: Algorithm = "round_robin") -> Dispatcher:
    return Dispatcher("farm", DispatcherSet(algorithm=algorithm, destinations=destinations))


def boxes(*uris: str, **fields: int) -> tuple[SetMember, ...]:
    return tuple(SetMember(uri=uri, **fields) for uri in uris)


def firsts(dispatcher: Dispatcher, calls: int, **kwargs: object) -> Counter[str]:
    counts: Counter[str] = Counter()
    for n in range(calls):
        order = dispatcher.order(Call(call_id=f"call-{n}", from_user=f"user{n}"), **kwargs)  # type: ignore[arg-type]
        counts[order[0].uri] += 1
    return counts


def test_round_robin_over_three_gives_equal_shares() -> None:
    dispatcher = farm(*boxes(A, B, C))
    assert firsts(dispatcher, 3000) == {A: 1000, B: 1000, C: 1000}


def test_round_robin_failover_order_is_the_rest_of_the_rotation() -> None:
    dispatcher = farm(*boxes(A, B, C))
    orders = [[d.uri for d in dispatcher.order(Call())] for _ in range(3)]
    assert orders == [[A, B, C], [B, C, A], [C, A, B]]


def test_weighted_round_robin_weights_one_to_two_give_one_to_two() -> None:
    dispatcher = farm(
        SetMember(uri=A, weight=1),
        SetMember(uri=B, weight=2),
        algorithm="weighted_round_robin",
    )
    counts = firsts(dispatcher, 3000)
    assert counts[A] == pytest.approx(1000, rel=0.03)
    assert counts[B] == pytest.approx(2000, rel=0.03)


def test_weighted_round_robin_interleaves_rather_than_bursting() -> None:
    dispatcher = farm(
        SetMember(uri=A, weight=1),
        SetMember(uri=B, weight=2),
        algorithm="weighted_round_robin",
    )
    picks = [dispatcher.order(Call())[0].uri for _ in range(6)]
    assert picks == [B, A, B, B, A, B]


def test_call_id_hash_is_stable_and_spread() -> None:
    dispatcher = farm(*boxes(A, B, C), algorithm="hash_call_id")
    again = farm(*boxes(A, B, C), algorithm="hash_call_id")
    for n in range(200):
        call = Call(call_id=f"abc-{n}@host")
        assert dispatcher.order(call) == dispatcher.order(call) == again.order(call)
    counts = firsts(dispatcher, 3000)
    assert set(counts) == {A, B, C}
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_call_id_hash_is_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; the dispatcher's hash must not be."""
    code = (
        "from shared.dispatcher import Call, SetMember, Dispatcher, DispatcherSet\n"
        f"d = Dispatcher('f', DispatcherSet(algorithm='hash_call_id', destinations=["
        f"SetMember(uri='{A}'), SetMember(uri='{B}'), SetMember(uri='{C}')]))\n"
        "print(','.join(d.order(Call(call_id=f'c{n}'))[0].uri for n in range(50)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    local = farm(*boxes(A, B, C), algorithm="hash_call_id")
    assert out.split(",") == [local.order(Call(call_id=f"c{n}"))[0].uri for n in range(50)]


def test_hash_moves_only_the_calls_of_a_dead_destination() -> None:
    dispatcher = farm(*boxes(A, B, C), algorithm="hash_call_id")
    calls = [Call(call_id=f"id-{n}") for n in range(600)]
    before = [dispatcher.order(call)[0].uri for call in calls]
    after = [dispatcher.order(call, states={B: "down"})[0].uri for call in calls]
    for old, new in zip(before, after, strict=True):
        assert new == old if old != B else new in (A, C)
    assert B not in after


def test_from_user_hash_keeps_a_user_on_one_box_and_spreads_users() -> None:
    dispatcher = farm(*boxes(A, B, C), algorithm="hash_from_user")
    for user in ("alice", "bob", "carol"):
        chosen = {
            dispatcher.order(Call(call_id=f"{user}-{n}", from_user=user))[0].uri for n in range(20)
        }
        assert len(chosen) == 1
    counts = firsts(dispatcher, 3000)
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_hash_respects_weights() -> None:
    dispatcher = farm(
        SetMember(uri=A, weight=1), SetMember(uri=B, weight=3), algorithm="hash_call_id"
    )
    counts = firsts(dispatcher, 4000)
    assert counts[B] / counts[A] == pytest.approx(3, rel=0.15)


def test_priority_orders_highest_first_then_set_order() -> None:
    dispatcher = farm(
        SetMember(uri=A, priority=1),
        SetMember(uri=B, priority=5),
        SetMember(uri=C, priority=1),
        algorithm="priority",
    )
    assert [d.uri for d in dispatcher.order(Call())] == [B, A, C]
    assert [d.uri for d in dispatcher.order(Call(), states={B: "down"})] == [A, C]


def test_least_calls_picks_the_least_loaded() -> None:
    dispatcher = farm(*boxes(A, B, C), algorithm="least_calls")
    order = dispatcher.order(Call(), active_calls={A: 7, B: 2, C: 4})
    assert [d.uri for d in order] == [B, C, A]


def test_least_calls_weighs_load_by_capacity() -> None:
    dispatcher = farm(
        SetMember(uri=A, weight=1), SetMember(uri=B, weight=4), algorithm="least_calls"
    )
    assert dispatcher.order(Call(), active_calls={A: 2, B: 6})[0].uri == B


def test_random_is_roughly_uniform() -> None:
    dispatcher = Dispatcher(
        "farm",
        DispatcherSet(algorithm="random", destinations=boxes(A, B, C)),
        rng=random.Random(7),
    )
    counts = firsts(dispatcher, 3000)
    assert all(900 < count < 1100 for count in counts.values()), counts
    assert sorted(d.uri for d in dispatcher.order(Call())) == [A, B, C]


@pytest.mark.parametrize("algorithm", get_args(Algorithm))
def test_failover_skips_a_down_destination_and_keeps_probing_as_last_resort(
    algorithm: Algorithm,
) -> None:
    dispatcher = farm(*boxes(A, B, C), algorithm=algorithm)
    for n in range(30):
        order = [
            d.uri
            for d in dispatcher.order(
                Call(call_id=f"c{n}", from_user=f"u{n}"),
                states={A: "down", B: "probing"},
            )
        ]
        assert order == [C, B]
        assert dispatcher.order(Call(), states={A: "down", B: "disabled", C: "down"}) == []


def test_a_box_dying_mid_run_gets_no_more_calls() -> None:
    dispatcher = farm(*boxes(A, B, C))
    states: dict[str, str] = {}
    seen_after: Counter[str] = Counter()
    for n in range(300):
        if n == 150:
            states[B] = "down"
        first = dispatcher.order(Call(call_id=str(n)), states=states)[0].uri
        if n >= 150:
            seen_after[first] += 1
    assert seen_after == {A: 75, C: 75}


def test_weight_zero_is_standby_after_the_weighted_ones() -> None:
    dispatcher = farm(
        SetMember(uri=A, weight=0), SetMember(uri=B), algorithm="weighted_round_robin"
    )
    assert [d.uri for d in dispatcher.order(Call())] == [B, A]
    assert [d.uri for d in dispatcher.order(Call(), states={B: "down"})] == [A]


def test_a_set_refuses_duplicate_destinations_and_unknown_algorithms() -> None:
    with pytest.raises(ValidationError, match="appears twice"):
        DispatcherSet(destinations=boxes(A, A))
    with pytest.raises(ValidationError):
        DispatcherSet.model_validate({"algorithm": "fastest", "destinations": [{"uri": A}]})


def test_destination_target_id() -> None:
    assert destination_target_id("farm", A) == f"ds:farm:{A}"
