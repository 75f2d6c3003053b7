"""A call's answer is stamped when the edge sends the 2xx on to the caller, not when it came;
no event of a call is stamped before the call's start.

The caller (and SIPp, which the wire tests compare durations with) is answered
when the relayed 2xx reaches it; the gap from the gateway's 2xx arriving is the
edge's loop lag, tens of milliseconds at load, and it landed in every duration.
Two messages' receive stamps can come out a millisecond in the wrong order: a
failure stamped before its call's start was left out of the record, which stayed
open (a CI run's busy call).
"""

from __future__ import annotations

import random

from services.edge.proxy.call_events import CallEvents, wall_ms
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEvent,
    CallFailed,
    CallRinging,
)
from tests.services.edge.proxy.support import published, without_legs
from tests.services.edge.proxy.test_call_events import (
    GATEWAY_1,
    GATEWAY_2,
    KEY,
    START,
    WALL,
    cancel,
    events_run,
)
from tests.services.edge.proxy.test_core import GW1, GW2, Run, answer, invite, only_request


def answer_relayed_at(run: Run, clock: float) -> list[CallEvent]:
    """The INVITE at 100, the gateway's 200 arriving at 102 and relayed when the core's
    clock reads `clock`: the events published with it."""
    events = run.proxy.call_events
    assert isinstance(events, CallEvents)
    events.clock = lambda: clock
    forwarded = only_request(run.send(invite()), GW1)
    run.now = 102.0
    return without_legs(published(run.send(answer(forwarded, 200), GW1)))


def test_the_answer_carries_the_time_the_2xx_was_sent_on_to_the_caller() -> None:
    assert answer_relayed_at(events_run(), 102.04) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + 102, sent_at=WALL + 100, status=200, reason="Whatever"
        ),
        CallAnswered(**KEY, **GATEWAY_1, at=WALL + 102.04, to_tag="gw"),
    ]


def test_a_clock_coarser_than_the_arrival_stamp_never_puts_the_answer_before_it() -> None:
    answered = answer_relayed_at(events_run(), 101.9995)[-1]
    assert isinstance(answered, CallAnswered)
    assert answered.at == WALL + 102


EARLY = START - 0.0013
"""A later message's stamp 1.3 ms before the INVITE's (the CI run's inversion)."""


def test_a_failure_stamped_before_its_calls_start_is_stamped_at_the_start() -> None:
    run = events_run()
    forwarded = only_request(run.send(invite()), GW1)
    run.now = EARLY
    assert published(run.send(answer(forwarded, 486), GW1)) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + START, sent_at=WALL + START, status=486,
            reason="Whatever",
        ),
        CallFailed(**KEY, at=WALL + START, status=486, reason="Whatever", origin="upstream"),
    ]  # fmt: skip # the branch's fields on two lines


def test_a_ringing_an_answer_and_a_cancel_are_never_before_the_start_either() -> None:
    run = events_run()
    events = run.proxy.call_events
    assert isinstance(events, CallEvents)
    events.clock = lambda: EARLY
    forwarded = only_request(run.send(invite()), GW1)
    run.now = EARLY
    assert published(run.send(answer(forwarded, 180), GW1)) == [
        CallRinging(**KEY, at=WALL + START, status=180)
    ]
    assert published(run.send(cancel())) == [CallCancelled(**KEY, at=WALL + START)]
    answered = without_legs(published(run.send(answer(forwarded, 200), GW1)))[-1]
    assert isinstance(answered, CallAnswered)
    assert answered.at == WALL + START


def test_a_stamp_is_the_unix_time_to_the_millisecond() -> None:
    """Whole milliseconds, as ``round(t, 3)`` gives them, without its decimal rounding: at
    worst a half-millisecond tie goes the other way (give or take a float's resolution at
    2e9 s, 2.4e-7 s)."""
    events = CallEvents("edge-a")
    rng = random.Random(5)
    for _ in range(20_000):
        events.wall_offset = rng.uniform(1.6e9, 2.1e9)
        now = rng.uniform(0, 1e6)
        at = events.at(now)
        assert round(at * 1000) == at * 1000  # whole milliseconds
        assert abs(at - round(now + events.wall_offset, 3)) <= 0.001 + 5e-7
        assert abs(at - (now + events.wall_offset)) <= 0.0005 + 5e-7
    events.wall_offset = 1_796_447_319.0
    assert events.at(0.0046) == 1_796_447_319.005
    assert events.at(-0.0044) == 1_796_447_318.996


def failover(
    run: Run, answered_503: float, moved_by: float, answered_200: float
) -> list[CallEvent]:
    """A call failed over from gateway 1's 503 (arriving at `answered_503`) to gateway 2's
    200 (at `answered_200`), the wall offset re-measured `moved_by` lower in between."""
    events = run.proxy.call_events
    assert isinstance(events, CallEvents)
    first = only_request(run.send(invite()), GW1)
    run.now = answered_503
    actions = run.send(answer(first, 503), GW1)
    second = only_request(actions, GW2)
    events.wall_offset -= moved_by
    run.now = answered_200
    return without_legs(published(actions + run.send(answer(second, 200), GW2)))


def failover_events(first_answered: float, second_answered: float) -> list[CallEvent]:
    """`failover`'s events, both branches sent at the call's start (the second on a 503
    stamped no later than it)."""
    return [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + first_answered, sent_at=WALL + START, status=503,
            reason="Whatever",
        ),
        BranchTried(
            **KEY, **GATEWAY_2, at=WALL + second_answered, sent_at=WALL + START, status=200,
            reason="Whatever",
        ),
        CallAnswered(**KEY, **GATEWAY_2, at=WALL + second_answered, to_tag="gw"),
    ]  # fmt: skip # the branches' fields on two lines


def test_a_failovers_branches_keep_their_order_when_the_wall_offset_is_measured_anew() -> None:
    """The runtime re-measures the offset while calls go on (`runtime.loop_probe`); one
    3 ms lower would stamp the second branch, sent 0.4 ms after the first, before it. A call
    keeps the offset it started on; the next call takes the new one."""
    run = events_run()
    assert failover(run, START + 0.0004, 0.003, START + 0.0008) == failover_events(
        START, START + 0.001
    )
    run.now = START + 1
    started = published(run.send(invite(branch="z9hG4bKc2").replace(b"call-1", b"call-2")))[0]
    assert started.at == round((WALL - 0.003 + START + 1) * 1000) / 1000


def test_a_failover_sent_on_an_answer_stamped_before_the_call_is_sent_at_its_start() -> None:
    """The 503 stamped before the INVITE it answered (a CI run's, by a fraction of a
    millisecond): the second branch, sent on it, is no earlier than the first, and the fold
    orders the two by their answers."""
    assert failover(events_run(), EARLY, 0.0, START + 0.002) == failover_events(
        START, START + 0.002
    )


def test_a_time_is_written_to_the_millisecond_and_a_half_millisecond_rounds_up() -> None:
    """`wall_ms`: the core's clock plus the wall offset, whole milliseconds; 1.0625 s is
    1062.5 ms exactly in binary (``round`` would give the even 1062)."""
    assert wall_ms(1.0625, 0.0) == 1.063
    assert wall_ms(1.0614, 1_000_000.0) == 1_000_001.061  # below the half: down
    assert wall_ms(102.04, WALL) == WALL + 102.04
