"""The fold: every field of a record from events, and any order or duplication gives the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.accounting.fold import TimeoutClose, fold_call
from shared.contracts.calls import (
    CallEnded,
    CallEvent,
    CallStarted,
    CallTransferred,
    CallUpdated,
)
from tests.services.accounting.calls import (
    T0,
    answered_call,
    branch,
    cancelled,
    failed,
    started,
)


def test_an_answered_call_has_every_field() -> None:
    record = fold_call(answered_call())[0]
    assert record.state == "complete"
    assert record.disposition == "answered"
    assert (record.setup_at, record.ring_at, record.answer_at) == (T0, T0 + 1, T0 + 3)
    assert record.end_at == T0 + 64.5
    assert record.post_dial_delay_ms == 1000
    assert record.duration_ms == 61_500
    assert record.billable_seconds == 62
    assert (record.final_status, record.final_reason) == (200, "OK")
    assert record.hangup_side == "caller"
    assert record.caller_normalised == "+442079460000"
    assert (record.callee_dialled, record.callee) == ("0033123456789", "+33123456789")
    assert (record.source, record.transport) == ("192.0.2.10:5060", "udp")
    assert (record.subscriber, record.group, record.rule) == (
        "alice@example.com",
        "eu",
        "fr-mobile",
    )
    assert (record.gateway, record.carrier) == ("gw1", "carrier-2")
    assert [(a.target, a.status) for a in record.attempts] == [("gw0", 486), ("gw1", 200)]
    assert record.edges == ("edge-a", "edge-b")
    assert record.last_seen_at == T0 + 64.5


def test_a_b2bua_call_is_marked_and_names_its_other_leg() -> None:
    events = answered_call()
    events[0] = events[0].model_copy(update={"mode": "b2bua"})
    events[4] = events[4].model_copy(update={"b2bua_leg_call_id": "leg-b"})
    record = fold_call(events)[0]
    assert (record.mode, record.call_id, record.b2bua_leg_call_id) == ("b2bua", "c1", "leg-b")
    proxied = fold_call(answered_call())[0]
    assert (proxied.mode, proxied.b2bua_leg_call_id) == (None, None)


def test_a_b2bua_calls_transfers_are_recorded_in_order() -> None:
    """Each ``edge.call.transferred`` of the attempt, done or failed, in the order made; an
    event seen twice is one transfer."""
    events = answered_call()
    done = CallTransferred(
        call_id="c1", from_tag="ft", to_tag="tt", at=T0 + 20, edge="edge-a",
        target="sip:agent2@192.0.2.7", ok=True, status=200, reason="OK",
        b2bua_leg_call_id="leg-c", replaced_leg_call_id="leg-b",
    )  # fmt: skip # the event's fields on three lines
    failed_first = done.model_copy(
        update={"at": T0 + 10, "ok": False, "status": 486, "failed_at": "target",
                "b2bua_leg_call_id": "leg-x", "replaced_leg_call_id": None}
    )  # fmt: skip # the changes on two lines
    record = fold_call([*events, done, failed_first, done])[0]
    assert [(t.at, t.ok, t.status, t.failed_at, t.leg_call_id) for t in record.transfers] == [
        (T0 + 10, False, 486, "target", "leg-x"),
        (T0 + 20, True, 200, None, "leg-c"),
    ]
    assert record.transfers[1].target == "sip:agent2@192.0.2.7"
    assert (record.hangup_side, record.duration_ms) == ("caller", 61_500)  # unchanged
    assert fold_call(events)[0].transfers == ()


def test_the_callee_hanging_up_is_told_by_the_bye_tags() -> None:
    record = fold_call(answered_call(by="callee"))[0]
    assert record.hangup_side == "callee"


def test_an_edge_ending_the_call_is_the_edge_side() -> None:
    by_edge = CallEnded(
        call_id="c1",
        from_tag="ft",
        to_tag="tt",
        at=T0 + 10,
        edge="edge-a",
        status=200,
        by_edge=True,
    )
    assert fold_call([*answered_call()[:-1], by_edge])[0].hangup_side == "edge"


def test_a_second_edge_reporting_the_bye_later_changes_nothing() -> None:
    first = answered_call()
    bye = first[-1]
    again = bye.model_copy(update={"edge": "edge-c", "at": bye.at + 0.02})
    assert fold_call([*first, again]) == fold_call(first)


def test_an_answered_call_without_bye_stays_open() -> None:
    record = fold_call(answered_call()[:-1])[0]
    assert (record.state, record.disposition, record.end_at) == ("open", "answered", None)
    assert record.duration_ms == 0


def test_a_timeout_close_ends_at_the_last_sign_of_life() -> None:
    events = [
        *answered_call()[:-1],
        TimeoutClose(call_id="c1", from_tag="ft", at=T0 + 99999, edge=""),
    ]
    record = fold_call(events)[0]
    assert (record.state, record.disposition) == ("complete", "timeout")
    assert record.end_at == T0 + 30
    assert record.duration_ms == 27_000
    assert record.edges == ("edge-a", "edge-b")


def test_a_late_bye_after_a_timeout_close_wins() -> None:
    events = [*answered_call(), TimeoutClose(call_id="c1", from_tag="ft", at=T0 + 99999, edge="")]
    assert fold_call(events)[0].disposition == "answered"


def test_a_call_that_never_got_a_final_answer_times_out_at_its_last_event() -> None:
    events = [started(), TimeoutClose(call_id="c1", from_tag="ft", at=T0 + 99999, edge="")]
    record = fold_call(events)[0]
    assert (record.disposition, record.end_at, record.final_status) == ("timeout", T0, None)


@pytest.mark.parametrize(
    ("status", "origin", "cause", "disposition"),
    [
        (486, "upstream", None, "busy"),
        (600, "upstream", None, "busy"),
        (480, "upstream", None, "no_answer"),
        (408, "upstream", None, "no_answer"),
        (487, "upstream", None, "cancelled"),
        (503, "upstream", None, "failed"),
        (404, "upstream", None, "failed"),
        (404, "edge", "unrouted", "unrouted"),
        (404, "edge", None, "unrouted"),
        (407, "edge", "rejected", "rejected"),
        (403, "edge", None, "rejected"),
        (408, "edge", "timeout", "no_answer"),
        (486, "edge", "limit", "busy"),
        (503, "edge", "limit", "failed"),
        (503, "edge", "unavailable", "failed"),
    ],
)
def test_failure_dispositions(
    status: int, origin: str, cause: str | None, disposition: str
) -> None:
    record = fold_call([started(), failed(status=status, origin=origin, cause=cause)])[0]
    assert (record.state, record.disposition, record.final_status) == (
        "complete",
        disposition,
        status,
    )
    assert record.hangup_side == ("edge" if origin == "edge" else "callee")
    assert record.end_at == T0 + 2


def test_a_cancel_is_cancelled_by_the_caller() -> None:
    record = fold_call([started(), cancelled()])[0]
    assert (record.disposition, record.final_status, record.hangup_side) == (
        "cancelled",
        487,
        "caller",
    )


def test_an_answer_racing_a_cancel_is_answered() -> None:
    events = [*answered_call(), cancelled(at=T0 + 3.001)]
    assert fold_call(events)[0].disposition == "answered"


def test_a_challenge_before_the_accepted_invite_is_not_its_end() -> None:
    challenge = failed(status=407, origin="edge", cause="rejected", at=T0 - 0.2)
    record = fold_call([challenge, *answered_call()])[0]
    assert record.disposition == "answered"


def test_a_rejection_alone_is_an_open_record_without_caller_details() -> None:
    record = fold_call([failed(status=403, origin="edge", cause="rejected")])[0]
    assert (record.disposition, record.setup_at, record.caller) == ("rejected", T0 + 2, None)
    assert record.state == "open"  # its CallStarted may still come


def test_a_call_is_complete_only_once_its_start_is_there() -> None:
    """Events redelivered after an instance died may bring the start last."""
    events = answered_call()
    [start] = [event for event in events if isinstance(event, CallStarted)]
    [without] = fold_call([event for event in events if event is not start])
    assert (without.state, without.disposition, without.callee) == ("open", "answered", None)
    [whole] = fold_call(events)
    assert (whole.state, whole.callee) == ("complete", start.callee)


def test_a_timeout_close_completes_a_call_whose_start_never_came() -> None:
    events = [e for e in answered_call() if not isinstance(e, CallStarted)]
    close = TimeoutClose(call_id="c1", from_tag="ft", at=T0 + 99999, edge="")
    [record] = fold_call([*events, close])
    assert (record.state, record.disposition) == ("complete", "answered")


def test_a_bye_without_its_call_waits() -> None:
    assert fold_call([answered_call()[-1]]) == []


def test_two_attempts_of_one_call_id_are_two_records() -> None:
    events = [*answered_call(tag="a"), started(tag="b"), failed(tag="b")]
    records = fold_call(events)
    assert [(r.from_tag, r.disposition) for r in records] == [("a", "answered"), ("b", "busy")]


def test_an_update_of_another_attempt_is_not_ours() -> None:
    other = CallUpdated(
        call_id="c1", from_tag="x", to_tag="y", at=T0 + 500, edge="e", method="INVITE"
    )
    record = fold_call([*answered_call(), other])[0]
    assert record.last_seen_at == T0 + 64.5


SCRIPTS = [
    answered_call(),
    answered_call(by="callee"),
    [*answered_call()[:-1], TimeoutClose(call_id="c1", from_tag="ft", at=T0 + 9e4, edge="")],
    [started(), branch(status=503), failed(status=503)],
    [started(), cancelled(), failed(status=407, origin="edge", cause="rejected", at=T0 - 1)],
    [*answered_call(tag="a"), started(tag="b"), failed(tag="b"), cancelled(tag="a")],
    [
        *answered_call(),
        CallEnded(
            call_id="c1", from_tag="tt", to_tag="ft", at=T0 + 64.5, edge="edge-c", status=200
        ),
    ],
]


@given(data=st.data(), script=st.sampled_from(SCRIPTS))
def test_any_order_or_duplication_gives_the_same_records(
    data: st.DataObject, script: list[CallEvent]
) -> None:
    expected = fold_call(script)
    extra = data.draw(st.lists(st.sampled_from(script), max_size=len(script) * 2))
    shuffled = data.draw(st.permutations([*script, *extra]))
    assert fold_call(shuffled) == expected
