"""Setting a B2BUA call up: leg B originated from leg A, answers relayed, CANCEL, refusal."""

from __future__ import annotations

from services.edge.b2bua.engine import Originate, PairTarget
from shared.sip.message import Request, Response, parse_message
from tests.services.edge.b2bua.support import (
    A_CALL_ID,
    A_RECORD_ROUTE,
    A_TAG,
    B_CONTACT,
    B_RECORD_ROUTE,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    SDP_A,
    SDP_B,
    Call,
    answer,
    caller_invite,
    head,
    request_to,
    response_to,
    sent,
)

A_SECRETS = (A_CALL_ID, A_TAG, "198.51.100.7", "proxy.a.example", "10.0.0.5")
B_SECRETS = (B_TAG, "sbc.b.example", "gw@203.0.113.5", "z9hG4bK")


def test_the_caller_gets_100_and_the_adapter_an_originate() -> None:
    call = Call()
    actions = call.from_a(caller_invite())
    assert response_to(actions, CALLER).status == 100
    (originate,) = [a for a in actions if isinstance(a, Originate)]
    assert originate.request.call_id == A_CALL_ID


def test_leg_b_carries_the_body_and_allowed_headers_and_nothing_of_leg_a() -> None:
    call = Call()
    extra: tuple[tuple[str, str], ...] = (
        ("Subject", "sales"),
        ("X-Internal", "carrier=acme"),
        ("User-Agent", "PBX 1.0"),
    )
    extra += (("Allow", "INVITE, REFER"), ("Supported", "100rel, timer"))
    call.invite(caller_invite(extra=extra))
    invite = call.invite_b
    assert invite is not None
    wire = head(invite)
    for secret in (*A_SECRETS, "carrier=acme", "PBX 1.0"):
        assert secret.encode() not in wire, secret
    assert invite.uri_text == "sip:+15550100@gw.example"
    assert invite.body == SDP_A
    assert invite.header("subject") == "sales"
    assert invite.header("content-type") == "application/sdp"
    assert invite.max_forwards == 68  # the caller's 69, less one
    assert invite.from_.display_name == "Alice"  # the caller's identity is kept
    assert str(invite.from_.uri) == "sip:alice@a.example"
    assert invite.to_tag is None
    assert invite.top_via.sent_by == f"{EDGE.host}:{EDGE.port}"
    assert len(invite.vias) == 1
    assert str(invite.contacts[0].uri) == f"sip:{EDGE.host}:{EDGE.port};transport=udp"
    assert not invite.has_header("record-route")
    assert not invite.has_header("allow")
    assert invite.headers("supported") == ["timer"]  # the edge's own offer, not the caller's
    assert invite.cseq.seq == 1


def test_a_provisional_goes_to_the_caller_with_the_edges_tag_and_contact() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    ringing = answer(call.invite_b, 180, tag=B_TAG, contact=B_CONTACT)
    relayed = response_to(call.from_b(ringing), CALLER)
    assert relayed.status == 180
    assert relayed.call_id == A_CALL_ID
    assert relayed.from_tag == A_TAG
    assert relayed.to_tag not in (None, B_TAG)
    assert str(relayed.contacts[0].uri) == f"sip:{EDGE.host}:{EDGE.port};transport=udp"
    for secret in B_SECRETS[:3]:
        assert secret.encode() not in head(relayed), secret


def test_the_answer_crosses_hidden_and_the_callers_ack_becomes_leg_bs() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    ok = response_to(call.answer_b(), CALLER)
    assert ok.status == 200
    assert ok.body == SDP_B
    assert ok.call_id == A_CALL_ID
    assert ok.headers("record-route") == [A_RECORD_ROUTE]  # the caller's own, §12.1.1
    for secret in (*B_SECRETS[:3], call.invite_b.call_id):
        assert secret.encode() not in head(ok), secret
    caller = call.caller(ok)
    acks = call.from_a(caller.request("ACK", cseq=10))
    ack = request_to(acks, GATEWAY)
    assert ack.method == "ACK"
    assert ack.call_id == call.invite_b.call_id
    assert (ack.from_tag, ack.to_tag) == (call.invite_b.from_tag, B_TAG)
    assert ack.cseq.seq == 1
    assert ack.uri_text == "sip:gw@203.0.113.5:5060"  # the gateway's Contact
    assert ack.headers("route") == [B_RECORD_ROUTE]
    for secret in A_SECRETS:
        assert secret.encode() not in head(ack), secret


def test_a_late_offer_crosses_in_the_ack() -> None:
    call = Call()
    call.invite(caller_invite(body=b""))
    assert call.invite_b is not None and call.invite_b.body == b""
    ok = response_to(call.answer_b(body=SDP_B), CALLER)
    ack = call.caller(ok).request("ACK", SDP_A, cseq=10)
    relayed = request_to(call.from_a(ack), GATEWAY)
    assert relayed.body == SDP_A
    assert relayed.header("content-type") == "application/sdp"


def test_the_gateways_2xx_again_brings_the_ack_again() -> None:
    call = Call()
    call.answered()
    again = request_to(call.answer_b(), GATEWAY)
    assert again.method == "ACK"


def test_the_gateways_2xx_again_before_the_callers_ack_is_our_2xx_again() -> None:
    call = Call()
    call.invite()
    first = response_to(call.answer_b(), CALLER)
    again = response_to(call.answer_b(), CALLER)
    assert again.to_bytes() == first.to_bytes()


def test_a_failure_is_the_same_code_for_the_caller_and_ends_the_pair() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    busy = answer(call.invite_b, 486, tag=B_TAG)
    actions = call.from_b(busy)
    relayed = response_to(actions, CALLER)
    assert (relayed.status, relayed.reason) == (486, "Busy Here")
    assert relayed.to_tag is not None and relayed.to_tag != B_TAG
    ack = request_to(actions, GATEWAY)  # the client transaction's own ACK
    assert ack.method == "ACK"
    assert call.engine.pairs == {}


def test_a_refusal_answers_the_caller() -> None:
    call = Call()
    actions = call.from_a(caller_invite())
    (originate,) = [a for a in actions if isinstance(a, Originate)]
    refused = response_to(call.engine.refuse(originate.pair_id, 404, 1.0), CALLER)
    assert refused.status == 404
    assert call.engine.refuse(originate.pair_id, 404, 1.0) == []


def test_cancel_after_ringing_cancels_leg_b_and_gives_the_caller_487() -> None:
    call = Call()
    call.invite()
    assert call.invite_a is not None and call.invite_b is not None
    call.from_b(answer(call.invite_b, 180, tag=B_TAG))
    actions = call.from_a(_cancel_of(call.invite_a))
    statuses = sorted(m.status for m in sent(actions, CALLER) if isinstance(m, Response))
    assert statuses == [200, 487]
    cancel = request_to(actions, GATEWAY)
    assert cancel.method == "CANCEL"
    assert cancel.top_branch == call.invite_b.top_branch
    assert cancel.call_id == call.invite_b.call_id
    # The gateway's 487 is ACKed there, and the caller hears nothing more.
    after = call.from_b(answer(call.invite_b, 487, tag=B_TAG))
    assert [m.method for m in sent(after, GATEWAY) if isinstance(m, Request)] == ["ACK"]
    assert sent(after, CALLER) == []
    assert call.engine.pairs == {}


def test_cancel_before_any_provisional_waits_for_one() -> None:
    call = Call()
    call.invite()
    assert call.invite_a is not None and call.invite_b is not None
    actions = call.from_a(_cancel_of(call.invite_a))
    assert sent(actions, GATEWAY) == []  # §9.1: not before a provisional
    later = call.from_b(answer(call.invite_b, 183, tag=B_TAG))
    assert request_to(later, GATEWAY).method == "CANCEL"
    assert sent(later, CALLER) == []


def test_cancel_while_the_target_is_chosen_sends_nothing_out() -> None:
    call = Call()
    actions = call.from_a(caller_invite())
    (originate,) = [a for a in actions if isinstance(a, Originate)]
    cancelled = call.from_a(_cancel_of(originate.request))
    assert sorted(m.status for m in sent(cancelled, CALLER) if isinstance(m, Response)) == [
        200,
        487,
    ]
    assert (
        call.engine.originate(originate.pair_id, PairTarget("sip:x@gw.example", GATEWAY), 1) == []
    )


def test_an_answer_after_the_cancel_is_acked_and_hung_up() -> None:
    call = Call()
    call.invite()
    assert call.invite_a is not None
    assert call.invite_b is not None
    call.from_b(answer(call.invite_b, 180, tag=B_TAG))
    call.from_a(_cancel_of(call.invite_a))
    actions = call.answer_b()
    assert [m.method for m in sent(actions, GATEWAY) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert sent(actions, CALLER) == []


def test_a_cancel_matching_nothing_is_481() -> None:
    call = Call()
    invite = parse_message(caller_invite())
    assert isinstance(invite, Request)
    assert response_to(call.from_a(_cancel_of(invite)), CALLER).status == 481


def _cancel_of(invite: Request) -> bytes:
    headers = [
        ("Via", invite.headers("via")[0]),
        *(("Via", via) for via in invite.headers("via")[1:]),
        ("Max-Forwards", "70"),
        ("From", invite.header("from") or ""),
        ("To", invite.header("to") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    return Request.build("CANCEL", invite.uri_text, headers).to_bytes()


def test_an_info_while_ringing_crosses_and_leaves_the_call_to_be_answered() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    ringing = response_to(call.from_b(answer(call.invite_b, 180, tag=B_TAG)), CALLER)
    caller = call.caller(ringing)
    info = request_to(call.from_a(caller.request("INFO")), GATEWAY)
    assert (info.call_id, info.to_tag) == (call.invite_b.call_id, B_TAG)
    assert response_to(call.from_b(answer(info, 200)), CALLER).status == 200
    assert response_to(call.answer_b(), CALLER).status == 200
    assert call.engine.record(call.pair_id) is not None


def test_a_bye_before_the_answer_is_481() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    ringing = response_to(call.from_b(answer(call.invite_b, 180, tag=B_TAG)), CALLER)
    actions = call.from_a(call.caller(ringing).request("BYE"))
    assert response_to(actions, CALLER).status == 481
    assert sent(actions, GATEWAY) == []


def test_a_second_forks_2xx_is_not_taken_for_the_call() -> None:
    call = Call()
    caller, _ = call.answered()
    assert call.invite_b is not None
    other = answer(call.invite_b, 200, tag="otherfork", contact="<sip:gw2@203.0.113.6>")
    assert call.from_b(other) == []
    record = call.engine.record(call.pair_id)
    assert record is not None and record["b_remote_tag"] == B_TAG
    bye = request_to(call.from_a(caller.request("BYE")), GATEWAY)
    assert bye.to_tag == B_TAG


def test_an_allowed_header_that_does_not_decode_is_dropped_not_fatal() -> None:
    call = Call()
    call.invite(caller_invite(extra=(("Subject", "ok"),)).replace(b"Subject: ok", b"Subject: \xff"))
    assert call.invite_b is not None and not call.invite_b.has_header("subject")
    ringing = answer(call.invite_b, 180, tag=B_TAG, extra=(("Subject", "ok"),))
    relayed = response_to(call.from_b(ringing.replace(b"Subject: ok", b"Subject: \xfe")), CALLER)
    assert relayed.status == 180 and not relayed.has_header("subject")


def test_an_answer_that_does_not_parse_is_dropped_as_if_lost() -> None:
    call = Call()
    call.invite()
    assert call.invite_b is not None
    ok = answer(call.invite_b, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B)
    assert call.from_b(ok.replace(f"tag={B_TAG}".encode(), b"tag=\xff")) == []
    assert response_to(call.from_b(ok), CALLER).status == 200  # its retransmission is taken


def test_a_target_too_long_to_keep_is_502_for_the_caller() -> None:
    call = Call()
    actions = call.from_a(caller_invite())
    (originate,) = [a for a in actions if isinstance(a, Originate)]
    target = PairTarget("sip:" + "9" * 600 + "@gw.example", GATEWAY)
    out = call.engine.originate(originate.pair_id, target, 0.0)
    assert response_to(out, CALLER).status == 502
    assert sent(out, GATEWAY) == []


def test_an_answered_leg_b_keeps_its_invite_as_lines_only() -> None:
    """Timer M keeps leg B's INVITE transaction for 64*T1 once answered: the engine, having
    read the request on the answer, lets go of what was parsed (its ACKs read the CSeq again
    from the lines)."""
    call = Call()
    call.invite()
    (client,) = call.engine.table._clients.values()
    _ = (client.request.top_via, client.request.cseq)  # parsed while the transaction runs
    call.answer_b()
    assert client.answered
    assert client.request._top_via is None and client.request._cseq is None
    assert client.request.cseq.seq == 1  # read again from its lines
