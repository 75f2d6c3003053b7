"""A pair's state record: small and bounded, and enough for another edge to end the call."""

from __future__ import annotations

import pytest

from services.edge.b2bua.engine import B2bua
from services.edge.b2bua.legs import MAX_ROUTES
from services.edge.b2bua.record import RecordError, from_record, to_record
from shared.sip.message import Request
from tests.services.edge.b2bua.support import (
    A_CALL_ID,
    A_TAG,
    B_RECORD_ROUTE,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    Call,
    answer,
    caller_invite,
    request_to,
    response_to,
    sent,
)


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
