"""An answered B2BUA call: BYE, re-INVITE, UPDATE and INFO from either side, and the
hostile in-dialog requests (wrong tags, glare, CSeq backwards, extensions, methods)."""

from __future__ import annotations

import re

from services.edge.b2bua.engine import B2bua
from shared.sip.message import Request, Response
from shared.sip.timers import TimerSettings
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
    head,
    request_to,
    response_to,
    sent,
)


def test_bye_from_the_caller_ends_both_legs() -> None:
    call = Call()
    caller, gateway = call.answered()
    actions = call.from_a(caller.request("BYE"))
    assert response_to(actions, CALLER).status == 200
    bye = request_to(actions, GATEWAY)
    assert bye.method == "BYE"
    assert bye.call_id == gateway.call_id
    assert (bye.from_tag, bye.to_tag) == (call.invite_b and call.invite_b.from_tag, B_TAG)
    assert bye.cseq.seq == 2  # after leg B's INVITE
    assert bye.headers("route") == [B_RECORD_ROUTE]
    assert A_CALL_ID.encode() not in head(bye) and A_TAG.encode() not in head(bye)
    assert sent(call.from_b(answer(bye, 200)), CALLER) == []  # its 200 ends there
    again = call.from_a(caller.request("BYE"))
    assert response_to(again, CALLER).status == 481
    assert call.engine.pairs == {}


def test_bye_from_the_gateway_ends_both_legs() -> None:
    call = Call()
    _, gateway = call.answered()
    actions = call.from_b(gateway.request("BYE"))
    assert response_to(actions, GATEWAY).status == 200
    bye = request_to(actions, CALLER)
    assert bye.call_id == A_CALL_ID
    assert bye.to_tag == A_TAG
    assert bye.uri_text == "sip:alice@10.0.0.5:5070"  # the caller's Contact
    assert bye.headers("route") == [A_RECORD_ROUTE]
    assert gateway.call_id.encode() not in head(bye) and B_TAG.encode() not in head(bye)
    assert call.engine.pairs == {}


def test_a_reinvite_from_the_gateway_crosses_with_its_sdp_both_ways() -> None:
    call = Call()
    caller, gateway = call.answered()
    offer = SDP_B.replace(b"1 1 IN", b"1 2 IN")
    actions = call.from_b(gateway.request("INVITE", offer))
    assert response_to(actions, GATEWAY).status == 100
    reinvite = request_to(actions, CALLER)
    assert reinvite.body == offer
    assert reinvite.call_id == A_CALL_ID and reinvite.to_tag == A_TAG
    assert str(reinvite.contacts[0].uri) == f"sip:{EDGE.host}:{EDGE.port};transport=udp"
    assert reinvite.cseq.seq == 1  # leg A's first request of the edge
    ok = call.from_a(answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A))
    relayed = response_to(ok, GATEWAY)
    assert (relayed.status, relayed.body) == (200, SDP_A)
    assert relayed.call_id == gateway.call_id
    assert A_TAG.encode() not in head(relayed)
    ack = request_to(call.from_b(gateway.request("ACK", cseq=gateway.cseq)), CALLER)
    assert (ack.method, ack.cseq.seq, ack.call_id) == ("ACK", 1, A_CALL_ID)
    # The offer is answered: the caller may offer now.
    assert request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY).method == "INVITE"


def test_a_reinvite_refused_is_refused_to_its_sender() -> None:
    call = Call()
    caller, _ = call.answered()
    reinvite = request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY)
    actions = call.from_b(answer(reinvite, 488))
    assert response_to(actions, CALLER).status == 488
    assert request_to(actions, GATEWAY).method == "ACK"  # leg B's transaction ACKs it


def test_an_update_and_an_info_cross_with_their_bodies() -> None:
    call = Call()
    caller, gateway = call.answered()
    update = request_to(call.from_a(caller.request("UPDATE", SDP_A)), GATEWAY)
    assert (update.method, update.body, update.call_id) == ("UPDATE", SDP_A, gateway.call_id)
    assert response_to(call.from_b(answer(update, 200, body=SDP_B)), CALLER).body == SDP_B
    dtmf = b"Signal=5\r\nDuration=160\r\n"
    info = caller.request("INFO", extra=(("Info-Package", "dtmf"), ("X-Trace", "pbx7")))
    headers = b"Content-Type: application/dtmf-relay\r\nContent-Length: %d" % len(dtmf)
    info = info.replace(b"Content-Length: 0", headers) + dtmf
    relayed = request_to(call.from_a(info), GATEWAY)
    assert (relayed.method, relayed.body) == ("INFO", dtmf)
    assert relayed.header("info-package") == "dtmf"
    assert relayed.header("content-type") == "application/dtmf-relay"
    assert not relayed.has_header("x-trace")
    assert response_to(call.from_b(answer(relayed, 200)), CALLER).status == 200


def test_a_bye_with_wrong_tags_is_481_and_ends_nothing() -> None:
    call = Call()
    caller, _ = call.answered()
    forged = caller.request("BYE").replace(A_TAG.encode(), b"forged")
    actions = call.from_a(forged)
    assert response_to(actions, CALLER).status == 481
    assert sent(actions, GATEWAY) == []
    caller.remote = caller.remote.replace(";tag=", ";tag=x")
    assert response_to(call.from_a(caller.request("BYE")), CALLER).status == 481
    assert len(call.engine.pairs) == 1


def test_a_reinvite_while_the_other_sides_is_pending_is_491() -> None:
    call = Call()
    caller, gateway = call.answered()
    call.from_a(caller.request("INVITE", SDP_A))
    actions = call.from_b(gateway.request("INVITE", SDP_B))
    assert response_to(actions, GATEWAY).status == 491
    assert sent(actions, CALLER) == []
    update = call.from_b(gateway.request("UPDATE", SDP_B))
    assert response_to(update, GATEWAY).status == 491


def test_a_second_offer_of_the_same_side_is_500_with_retry_after() -> None:
    call = Call()
    caller, _ = call.answered()
    call.from_a(caller.request("INVITE", SDP_A))
    refused = response_to(call.from_a(caller.request("INVITE", SDP_A)), CALLER)
    assert refused.status == 500
    assert refused.header("retry-after") == "2"


def test_a_cseq_going_backwards_is_500() -> None:
    call = Call()
    _, gateway = call.answered()
    call.from_b(gateway.request("INFO"))
    actions = call.from_b(gateway.request("INFO", cseq=gateway.cseq - 1))
    refused = response_to(actions, GATEWAY)
    assert (refused.status, refused.reason) == (500, "Server Internal Error (CSeq out of order)")
    assert sent(actions, CALLER) == []


def test_an_extension_required_is_420_and_a_method_not_relayed_405() -> None:
    call = Call()
    caller, _ = call.answered()
    required = call.from_a(caller.request("INVITE", SDP_A, extra=(("Require", "100rel"),)))
    refused = response_to(required, CALLER)
    assert (refused.status, refused.header("unsupported")) == (420, "100rel")
    options = response_to(call.from_a(caller.request("OPTIONS")), CALLER)
    assert options.status == 405
    assert "UPDATE" in options.headers("allow")


def test_garbage_and_strangers_are_answered_not_relayed() -> None:
    call = Call()
    caller, _ = call.answered()
    broken = caller.request("INFO").replace(b"CSeq: ", b"CSeq: x")
    actions = call.from_a(broken)
    assert response_to(actions, CALLER).status == 400
    stranger = caller.request("BYE").replace(A_CALL_ID.encode(), b"unknown@x")
    assert response_to(call.from_a(stranger), CALLER).status == 481
    message = caller.request("MESSAGE").replace(b";tag=", b";nottag=", 2)
    assert response_to(call.from_a(message), CALLER).status in (405, 481)
    assert sent(call.from_b(b"SIP/2.0 200 OK\r\n\r\n"), CALLER) == []


def test_a_2xx_never_acked_ends_the_call_with_byes() -> None:
    call = Call(B2bua(EDGE, TimerSettings()))
    call.invite()
    call.answer_b()
    byes: list[Request] = []
    for step in range(1, 70):
        for message in sent(call.engine.expire(float(step))):
            if isinstance(message, Request) and message.method == "BYE":
                byes.append(message)
            assert not isinstance(message, Response) or message.status == 200
    assert call.invite_b is not None
    assert {bye.call_id for bye in byes} == {A_CALL_ID, call.invite_b.call_id}
    assert call.engine.pairs == {}


def test_a_cancelled_reinvite_is_487_and_cancelled_on_the_other_leg() -> None:
    call = Call()
    caller, _ = call.answered()
    data = caller.request("INVITE", SDP_A)
    reinvite = request_to(call.from_a(data), GATEWAY)
    call.from_b(answer(reinvite, 180))
    actions = call.from_a(_cancel_of(data))
    assert sorted(m.status for m in sent(actions, CALLER) if isinstance(m, Response)) == [200, 487]
    out = request_to(actions, GATEWAY)
    assert (out.method, out.top_branch) == ("CANCEL", reinvite.top_branch)
    assert sent(call.from_b(answer(reinvite, 487)), CALLER) == []
    assert len(call.engine.pairs) == 1  # the call goes on
    assert request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY).method == "INVITE"


def test_a_cancelled_reinvite_answered_anyway_is_acked_and_the_call_goes_on() -> None:
    call = Call()
    caller, _ = call.answered()
    data = caller.request("INVITE", SDP_A)
    reinvite = request_to(call.from_a(data), GATEWAY)
    call.from_b(answer(reinvite, 180))
    call.from_a(_cancel_of(data))
    actions = call.from_b(answer(reinvite, 200, contact=B_CONTACT, body=SDP_B))
    assert [m.method for m in sent(actions, GATEWAY) if isinstance(m, Request)] == ["ACK"]
    assert sent(actions, CALLER) == []
    assert len(call.engine.pairs) == 1
    assert request_to(call.from_a(caller.request("INFO")), GATEWAY).method == "INFO"


def _cancel_of(invite: bytes) -> bytes:
    """The CANCEL of the INVITE `invite` (its head, the method and body changed)."""
    head = invite.split(b"\r\n\r\n")[0].replace(b"INVITE", b"CANCEL")
    head = head.replace(b"Content-Type: application/sdp\r\n", b"")
    return re.sub(rb"Content-Length: \d+", b"Content-Length: 0", head) + b"\r\n\r\n"


def test_a_finished_call_leaves_nothing_behind_once_its_timers_ran() -> None:
    call = Call()
    caller, gateway = call.answered()
    info = request_to(call.from_a(caller.request("INFO")), GATEWAY)
    call.from_b(answer(info, 200))
    reinvite = request_to(call.from_b(gateway.request("INVITE", SDP_B)), CALLER)
    call.from_a(answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A))
    call.from_b(gateway.request("ACK", cseq=gateway.cseq))
    bye = request_to(call.from_a(caller.request("BYE")), GATEWAY)
    call.from_b(answer(bye, 200))
    engine = call.engine
    for now in (40.0, 80.0):
        engine.expire(now)
    assert len(engine.table) == 0
    assert engine.pairs == {} and engine._dialogs == {} and engine._unacked == {}
    assert engine._relays == {} and engine._serving == {} and engine._waiting == {}


def test_an_rfc2543_request_colliding_with_a_live_transaction_is_400() -> None:
    call = Call()
    caller, _ = call.answered()
    info = re.sub(rb"branch=z9hG4bK[0-9a-f]+", b"branch=old1", caller.request("INFO"))
    call.from_a(info)
    other = info.replace(f"tag={caller.remote.split('tag=')[1]}".encode(), b"tag=othertag")
    refused = response_to(call.from_a(other), CALLER)
    assert (refused.status, "2543" in refused.reason) == (400, True)
