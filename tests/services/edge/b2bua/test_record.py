"""A pair's state record: small and bounded, and enough for another edge to end the call."""

from __future__ import annotations

import pytest

from services.edge.b2bua.engine import B2bua
from services.edge.b2bua.legs import MAX_ROUTES
from services.edge.b2bua.record import (
    TIMER_FIELDS,
    RecordError,
    from_record,
    record_timers,
    to_record,
)
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.message import Request
from tests.services.edge.b2bua.support import (
    A_CALL_ID,
    A_TAG,
    B_CONTACT,
    B_RECORD_ROUTE,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    SDP_B,
    Call,
    answer,
    caller_invite,
    request_to,
    response_to,
    sent,
)
from tests.services.edge.b2bua.test_session_timer import requests, run_until


def test_only_an_answered_pair_has_a_record() -> None:
    call = Call()
    call.invite()
    assert call.engine.record(call.pair_id) is None
    call.answer_b()
    record = call.engine.record(call.pair_id)
    assert record is not None
    assert record["a_call_id"] == A_CALL_ID
    assert record["a_remote_tag"] == A_TAG
    assert record["b_remote_tag"] == B_TAG
    assert record["b_routes"] == B_RECORD_ROUTE
    assert record["a_peer"] == "udp 198.51.100.7 5062"
    assert all(isinstance(value, str) for value in record.values())
    size = sum(len(key) + len(value.encode()) for key, value in record.items())
    assert size < 1000, size  # a plain call's record: what Redis holds per call


def test_the_record_round_trips() -> None:
    call = Call()
    call.answered()
    pair = call.engine.pairs[call.pair_id]
    record = to_record(pair)
    assert to_record(from_record(record)) == record


def test_another_edge_ends_a_call_from_its_record() -> None:
    call = Call()
    caller, gateway = call.answered()
    call.from_b(gateway.request("INFO"))  # leg B's CSeq moves on, leg A's too
    record = call.engine.record(call.pair_id)
    assert record is not None
    other = Call(B2bua(EDGE))
    other.engine.adopt(dict(record))
    actions = other.from_a(caller.request("BYE"))
    assert response_to(actions, CALLER).status == 200
    bye = request_to(actions, GATEWAY)
    assert bye.call_id == gateway.call_id
    assert bye.to_tag == B_TAG
    assert bye.cseq.seq == 2
    # The gateway's own BYE through the second edge, on a rebuilt pair: the same.
    third = Call(B2bua(EDGE))
    third.engine.adopt(dict(record))
    ended = third.from_b(gateway.request("BYE"))
    assert response_to(ended, GATEWAY).status == 200
    to_caller = request_to(ended, CALLER)
    assert (to_caller.method, to_caller.call_id, to_caller.cseq.seq) == ("BYE", A_CALL_ID, 2)


def test_a_rebuilt_pair_still_refuses_a_cseq_going_backwards() -> None:
    call = Call()
    caller, _ = call.answered()
    call.from_a(caller.request("INFO"))
    record = call.engine.record(call.pair_id)
    assert record is not None
    other = Call(B2bua(EDGE))
    other.engine.adopt(record)
    stale = other.from_a(caller.request("BYE", cseq=caller.cseq))
    assert response_to(stale, CALLER).status == 500
    assert sent(stale, GATEWAY) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("a_local_cseq", "many"), ("b_peer", "udp 203.0.113.5"), ("created", "x" * 9000)],
)
def test_a_broken_record_is_refused_by_name(field: str, value: str) -> None:
    call = Call()
    call.answered()
    record = to_record(call.engine.pairs[call.pair_id])
    record[field] = value
    with pytest.raises(RecordError, match=field):
        from_record(record)
    del record[field]
    with pytest.raises(RecordError, match=f"no {field}"):
        from_record(record)


def test_a_record_with_too_many_routes_is_refused() -> None:
    call = Call()
    call.answered()
    record = to_record(call.engine.pairs[call.pair_id])
    record["b_routes"] = "\n".join(["<sip:r.example;lr>"] * (MAX_ROUTES + 1))
    with pytest.raises(RecordError, match="b_routes"):
        from_record(record)


def test_a_caller_with_too_long_a_route_set_is_refused_400() -> None:
    call = Call()
    routes = tuple(("Record-Route", f"<sip:p{i}.example;lr>") for i in range(MAX_ROUTES))
    refused = response_to(call.from_a(caller_invite(extra=routes)), CALLER)
    assert refused.status == 400
    assert "Record-Route" in refused.reason


def test_a_caller_with_an_overlong_contact_is_refused_400() -> None:
    call = Call()
    long = caller_invite().replace(b"alice@10.0.0.5", b"a" * 600 + b"@10.0.0.5")
    refused = response_to(call.from_a(long), CALLER)
    assert (refused.status, "Contact" in refused.reason) == (400, True)


def test_an_answer_with_too_long_a_route_set_is_hung_up_and_502() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    routes = tuple(("Record-Route", f"<sip:p{i}.example;lr>") for i in range(MAX_ROUTES + 1))
    actions = call.from_b(answer(call.invite_b, 200, tag=B_TAG, contact="<sip:gw@b>", extra=routes))
    assert response_to(actions, CALLER).status == 502
    out = [m.method for m in sent(actions, GATEWAY) if isinstance(m, Request)]
    assert out == ["ACK", "BYE"]
    assert call.engine.pairs == {}


def timed_record() -> tuple[Call, dict[str, str]]:
    """A call whose gateway refreshes by the edge (`90;refresher=uac`) without UPDATE in its
    Allow, and its record."""
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    call.invite()
    assert call.invite_b is not None
    extra = (("Session-Expires", "90;refresher=uac"), ("Allow", "INVITE, ACK, BYE"))
    ok_b = answer(call.invite_b, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B, extra=extra)
    ok = response_to(call.from_b(ok_b), CALLER)
    call.from_a(call.caller(ok).request("ACK", cseq=10))
    record = call.engine.record(call.pair_id)
    assert record is not None
    return call, record


def test_the_record_holds_the_legs_session_timers_and_update_allowed() -> None:
    _, record = timed_record()
    assert (record["a_timer"], record["b_timer"]) == ("", "90 edge")
    assert (record["a_update"], record["b_update"]) == ("0", "0")  # no UPDATE in any Allow
    assert record_timers(record) == {"b": (90, True)}
    record["b_update"] = "1"
    assert from_record(record).b.update and not from_record(record).a.update


def test_an_adopted_pair_refreshes_its_legs_at_once_and_expires_unrefreshed() -> None:
    _, record = timed_record()
    other = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    other.engine.adopt(record, 1000.0)
    assert other.engine.next_deadline() == 1000.0  # its last refresh: no time in the record
    refresh = request_to(other.engine.expire(1000.0), GATEWAY)
    assert refresh.method == "UPDATE"  # no SDP in the record: an UPDATE all the same
    assert refresh.header("session-expires") == "90;refresher=uac"
    other.now = 1000.0
    assert not requests(run_until(other, 1014.9), "BYE")
    byes = sent(run_until(other, 1015.0), CALLER)  # 45 - 30 s later: the leg expired
    assert [m.method for m in byes if isinstance(m, Request)] == ["BYE"]


def test_an_older_record_without_timers_still_reads() -> None:
    _, record = timed_record()
    for name in TIMER_FIELDS:
        del record[name]
    pair = B2bua(EDGE).adopt(record)
    assert record_timers(record) == {} and not pair.a.update and not pair.b.update


@pytest.mark.parametrize("value", ["90", "90 them", "² edge", "9" * 20 + " edge", "-1 peer"])
def test_a_broken_timer_field_is_refused_by_name(value: str) -> None:
    _, record = timed_record()
    record["b_timer"] = value
    with pytest.raises(RecordError, match="b_timer"):
        B2bua(EDGE).adopt(record)


def test_an_adopted_pair_whose_peer_refuses_update_keeps_the_call() -> None:
    _, record = timed_record()
    other = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    other.engine.adopt(record, 1000.0)
    update = request_to(other.engine.expire(1000.0), GATEWAY)
    refused = answer(update, 405, tag=B_TAG, extra=(("Allow", "INVITE, ACK, BYE"),))
    assert not requests(other.from_b(refused), "INVITE")  # no SDP to offer
    other.now = 1000.0
    assert not requests(run_until(other, 4000.0), "BYE")  # the leg is no longer timed
