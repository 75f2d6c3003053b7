"""A transfer of an answered B2BUA call (RFC 3725 flow I): leg C's INVITE without SDP, C's
offer to the caller by re-INVITE, the caller's answer in C's ACK, BYE on the old leg B; and
the failure branches, each leaving the call between the caller and the gateway."""

from __future__ import annotations

from services.edge.b2bua.engine import B2bua
from services.edge.b2bua.legs import PAIR_TAG
from services.edge.b2bua.pair import Progress
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.message import Request
from shared.sip.transaction import Send
from shared.sip.transport.destination import Destination
from tests.services.edge.b2bua.support import (
    A_CALL_ID,
    A_TAG,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    SDP_A,
    Agent,
    Call,
    answer,
    head,
    request_to,
    response_to,
    sent,
)
from tests.services.edge.b2bua.test_session_timer import answered_with_timer, requests, run_until

AGENT = Destination("udp", "203.0.113.77", 5070)
AGENT_URI = "sip:agent7@203.0.113.77:5070"
C_TAG = "agent7tag"
C_CONTACT = "<sip:agent7@203.0.113.77:5070>"
SDP_C = b"v=0\r\no=agent7 1 1 IN IP4 203.0.113.77\r\ns=-\r\nc=IN IP4 203.0.113.77\r\nt=0 0\r\n"
SDP_A2 = SDP_A.replace(b"1 1 IN", b"1 2 IN")


def transferred(call: Call) -> list[Progress]:
    steps = [step for step in call.engine.progress if step.step == "transferred"]
    call.engine.progress.clear()
    return steps


def start(call: Call) -> Request:
    """The transfer begun on an answered call: leg C's INVITE, as the agent gets it."""
    call.engine.progress.clear()
    refused, sends = call.engine.start_transfer(call.pair_id, AGENT_URI, AGENT, call.now)
    assert refused is None
    return request_to(list(sends), AGENT)


def test_a_transfer_moves_the_call_from_the_gateway_to_the_agent() -> None:
    call = Call()
    caller, gateway = call.answered()
    invite_c = start(call)
    assert (invite_c.method, invite_c.uri_text, invite_c.body) == ("INVITE", AGENT_URI, b"")
    assert invite_c.call_id not in (A_CALL_ID, gateway.call_id)
    assert invite_c.from_tag is not None and invite_c.from_tag.startswith(PAIR_TAG)
    assert "alice@a.example" in (invite_c.header("from") or "")  # the caller's identity
    assert A_CALL_ID.encode() not in head(invite_c) and A_TAG.encode() not in head(invite_c)
    assert sent(call.engine.receive(answer(invite_c, 180, tag=C_TAG), AGENT, 0), CALLER) == []
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    actions = call.engine.receive(ok_c, AGENT, 0)
    reinvite = request_to(actions, CALLER)
    assert (reinvite.method, reinvite.body) == ("INVITE", SDP_C)
    assert (reinvite.call_id, reinvite.to_tag) == (A_CALL_ID, A_TAG)
    assert reinvite.header("content-type") == "application/sdp"
    assert invite_c.call_id.encode() not in head(reinvite) and C_TAG.encode() not in head(reinvite)
    assert sent(actions, AGENT) == [] and sent(actions, GATEWAY) == []  # C waits for its ACK
    assert transferred(call) == []
    actions = call.from_a(answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A2))
    ack_a = request_to(actions, CALLER)
    assert (ack_a.method, ack_a.cseq.seq, ack_a.body) == ("ACK", reinvite.cseq.seq, b"")
    ack_c = request_to(actions, AGENT)
    assert (ack_c.method, ack_c.call_id, ack_c.to_tag) == ("ACK", invite_c.call_id, C_TAG)
    assert (ack_c.cseq.seq, ack_c.body) == (invite_c.cseq.seq, SDP_A2)  # the caller's answer
    assert ack_c.uri_text == "sip:agent7@203.0.113.77:5070"
    bye_b = request_to(actions, GATEWAY)
    assert (bye_b.method, bye_b.call_id, bye_b.to_tag) == ("BYE", gateway.call_id, B_TAG)
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.ok
    assert (step.transfer.leg_call_id, step.transfer.replaced_call_id) == (
        invite_c.call_id,
        gateway.call_id,
    )
    record = call.engine.record(call.pair_id)
    assert record is not None and record["b_call_id"] == invite_c.call_id
    # The old leg is gone, the new one is the call's: the caller's BYE ends it at the agent.
    assert response_to(call.from_b(gateway.request("BYE")), GATEWAY).status == 481
    actions = call.from_a(caller.request("BYE"))
    assert response_to(actions, CALLER).status == 200
    bye_c = request_to(actions, AGENT)
    assert (bye_c.call_id, bye_c.to_tag, bye_c.cseq.seq) == (invite_c.call_id, C_TAG, 2)
    assert sent(actions, GATEWAY) == []
    assert call.engine.pairs == {}


def test_the_agents_2xx_again_gets_the_ack_again() -> None:
    call = Call()
    call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    assert sent(call.engine.receive(ok_c, AGENT, 0)) == []  # before the caller answered
    ok_a = answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A2)
    call.from_a(ok_a)
    assert request_to(call.engine.receive(ok_c, AGENT, 0), AGENT).body == SDP_A2
    assert request_to(call.from_a(ok_a), CALLER).method == "ACK"


def test_the_agent_refusing_leaves_the_call_as_it_was() -> None:
    call = Call()
    caller, gateway = call.answered()
    invite_c = start(call)
    actions = call.engine.receive(answer(invite_c, 486, tag=C_TAG), AGENT, 0)
    assert request_to(actions, AGENT).method == "ACK"  # its transaction's
    assert sent(actions, CALLER) == [] and sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert step.transfer is not None and not step.transfer.ok
    assert (step.status, step.transfer.failed_at, step.by_edge) == (486, "target", False)
    assert call.pair_id not in call.engine.transfers
    bye = request_to(call.from_a(caller.request("BYE")), GATEWAY)
    assert bye.call_id == gateway.call_id


def test_the_agent_not_answering_is_a_408_of_the_edge() -> None:
    call = Call()
    call.answered()
    start(call)
    actions = call.engine.expire(40.0)
    assert sent(actions, CALLER) == [] and sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert (step.status, step.by_edge) == (408, True)
    assert call.engine.record(call.pair_id) is not None  # still up


def test_an_agent_ringing_for_ever_is_cancelled_at_timer_c() -> None:
    """A 180 and never a final answer: at Timer C C's INVITE is cancelled, the transfer failed
    (not in flight for ever), the call still the caller's and the gateway's."""
    call = Call()
    call.answered()
    invite_c = start(call)
    call.engine.receive(answer(invite_c, 180, tag=C_TAG), AGENT, 0)
    assert [m.method for m in requests(run_until(call, 179.0), "CANCEL")] == []
    actions = run_until(call, 180.2)
    cancel = request_to(actions, AGENT)
    assert (cancel.method, cancel.call_id, cancel.cseq.seq) == ("CANCEL", invite_c.call_id, 1)
    assert sent(actions, CALLER) == [] and sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.failed_at == "target"
    assert (step.status, step.by_edge) == (408, True)
    assert call.pair_id not in call.engine.transfers
    late = call.engine.receive(answer(invite_c, 487, tag=C_TAG), AGENT, call.now)
    assert [m.method for m in sent(late) if isinstance(m, Request)] == ["ACK"]
    assert transferred(call) == []
    assert call.engine.start_transfer(call.pair_id, AGENT_URI, AGENT, call.now)[0] is None


def test_a_caller_ringing_the_reinvite_for_ever_is_cancelled_at_timer_c() -> None:
    """The caller answers the re-INVITE 180 and no more: at Timer C it is cancelled, C gets
    its ACK and a BYE, the offer is over (the caller's next one goes to the gateway)."""
    call = Call()
    caller, _ = call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    call.from_a(answer(reinvite, 180))
    actions = run_until(call, 180.2)
    cancel = request_to(actions, CALLER)
    assert (cancel.method, cancel.call_id, cancel.cseq.seq) == (
        "CANCEL", A_CALL_ID, reinvite.cseq.seq,
    )  # fmt: skip # the expected tuple on its own line
    assert [m.method for m in sent(actions, AGENT) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.failed_at == "caller"
    assert (step.status, step.by_edge) == (408, True)
    pair = call.engine.pairs[call.pair_id]
    assert (pair.offering, pair.ended, call.pair_id in call.engine.transfers) == (None, None, False)
    late = call.from_a(answer(reinvite, 487))
    assert [m.method for m in sent(late) if isinstance(m, Request)] == ["ACK"]
    assert transferred(call) == []
    assert request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY).method == "INVITE"


def test_the_caller_refusing_the_reinvite_drops_the_agent_and_keeps_the_gateway() -> None:
    call = Call()
    caller, _ = call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    actions = call.from_a(answer(reinvite, 491))
    assert request_to(actions, CALLER).method == "ACK"  # the re-INVITE's transaction's
    ack_c, bye_c = sent(actions, AGENT)
    assert isinstance(ack_c, Request) and isinstance(bye_c, Request)
    assert (ack_c.method, ack_c.body, bye_c.method) == ("ACK", b"", "BYE")
    assert (bye_c.call_id, bye_c.to_tag) == (invite_c.call_id, C_TAG)
    assert sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert step.transfer is not None
    assert (step.status, step.transfer.failed_at) == (491, "caller")
    # The offer is over: the caller offers to the gateway again, and hangs up there.
    assert request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY).method == "INVITE"
    call2 = Call()
    caller2, gateway2 = call2.answered()
    invite2 = start(call2)
    ok2 = answer(invite2, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite2 = request_to(call2.engine.receive(ok2, AGENT, 0), CALLER)
    call2.from_a(answer(reinvite2, 488))
    assert request_to(call2.from_a(caller2.request("BYE")), GATEWAY).call_id == gateway2.call_id


def agent_of(invite_c: Request) -> Agent:
    """The agent's side of leg C, from the INVITE it got (answered with `C_TAG`)."""
    edge_contact = str(invite_c.contacts[0].uri)
    local = f"<{AGENT_URI}>;tag={C_TAG}"
    return Agent(AGENT, invite_c.call_id, local, invite_c.header("from") or "", edge_contact)


def test_the_agent_hanging_up_before_the_caller_answers_fails_the_transfer() -> None:
    """C's BYE between its 2xx and the caller's: answered 200, the re-INVITE cancelled, the
    transfer failed, the call still the caller's and the gateway's (B gets no BYE)."""
    call = Call()
    caller, gateway = call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    call.from_a(answer(reinvite, 180))
    actions = call.engine.receive(agent_of(invite_c).request("BYE", cseq=1), AGENT, 0)
    assert response_to(actions, AGENT).status == 200
    cancel = request_to(actions, CALLER)
    assert (cancel.method, cancel.cseq.seq) == ("CANCEL", reinvite.cseq.seq)
    assert sent(actions, GATEWAY) == []
    (step,) = transferred(call)
    assert step.transfer is not None and not step.transfer.ok
    assert (step.transfer.failed_at, step.by_edge) == ("target", True)
    pair = call.engine.pairs[call.pair_id]
    assert (pair.offering, pair.ended, call.pair_id in call.engine.transfers) == (None, None, False)
    assert pair.b.call_id == gateway.call_id
    late = call.from_a(answer(reinvite, 487))
    assert [m.method for m in sent(late) if isinstance(m, Request)] == ["ACK"]
    assert transferred(call) == [] and sent(late, AGENT) == [] and sent(late, GATEWAY) == []
    again = request_to(call.engine.receive(ok_c, AGENT, 0), AGENT)  # its 2xx again
    assert (again.method, again.body) == ("ACK", b"")
    assert request_to(call.from_a(caller.request("BYE")), GATEWAY).call_id == gateway.call_id


def test_the_agent_hanging_up_before_the_reinvite_rings_cancels_it_once_it_does() -> None:
    call = Call()
    call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    actions = call.engine.receive(agent_of(invite_c).request("BYE", cseq=1), AGENT, 0)
    assert response_to(actions, AGENT).status == 200
    assert sent(actions, CALLER) == []  # no CANCEL before a provisional (§9.1)
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.failed_at == "target"
    cancel = request_to(call.from_a(answer(reinvite, 180)), CALLER)
    assert (cancel.method, cancel.cseq.seq) == ("CANCEL", reinvite.cseq.seq)


def test_the_callers_own_offer_during_the_transfer_is_491() -> None:
    call = Call()
    caller, _ = call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    call.engine.receive(ok_c, AGENT, 0)
    actions = call.from_a(caller.request("INVITE", SDP_A))
    assert response_to(actions, CALLER).status == 491
    assert sent(actions, GATEWAY) == [] and sent(actions, AGENT) == []


def test_an_offer_crossing_the_pair_when_the_agent_answers_fails_the_transfer() -> None:
    call = Call()
    caller, _ = call.answered()
    invite_c = start(call)
    request_to(call.from_a(caller.request("INVITE", SDP_A)), GATEWAY)  # pending on B
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    actions = call.engine.receive(ok_c, AGENT, 0)
    assert [m.method for m in sent(actions, AGENT) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert sent(actions, CALLER) == []
    (step,) = transferred(call)
    assert step.status == 491


def test_an_agent_answering_without_an_offer_is_dropped() -> None:
    call = Call()
    call.answered()
    invite_c = start(call)
    actions = call.engine.receive(answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT), AGENT, 0)
    assert [m.method for m in sent(actions, AGENT) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert sent(actions, CALLER) == []
    (step,) = transferred(call)
    assert (step.status, step.transfer and step.transfer.failed_at) == (488, "target")


def test_the_call_ending_while_the_agent_rings_cancels_it() -> None:
    call = Call()
    caller, _ = call.answered()
    invite_c = start(call)
    call.engine.receive(answer(invite_c, 180, tag=C_TAG), AGENT, 0)
    actions = call.from_a(caller.request("BYE"))
    assert request_to(actions, GATEWAY).method == "BYE"
    cancel = request_to(actions, AGENT)
    assert (cancel.method, cancel.call_id, cancel.cseq.seq) == ("CANCEL", invite_c.call_id, 1)
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.failed_at == "call"
    # The agent answers anyway: ACKed and sent a BYE, nothing to the caller.
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    late = call.engine.receive(ok_c, AGENT, 0)
    assert [m.method for m in sent(late, AGENT) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert sent(late, CALLER) == [] and transferred(call) == []


def test_the_call_ending_during_the_reinvite_drops_the_agent() -> None:
    call = Call()
    _, gateway = call.answered()
    invite_c = start(call)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, 0), CALLER)
    actions = call.from_b(gateway.request("BYE"))
    assert [m.method for m in sent(actions, CALLER) if isinstance(m, Request)] == ["BYE"]
    assert [m.method for m in sent(actions, AGENT) if isinstance(m, Request)] == ["ACK", "BYE"]
    (step,) = transferred(call)
    assert step.transfer is not None and step.transfer.failed_at == "call"
    late = call.from_a(answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A2))
    assert [m.method for m in sent(late) if isinstance(m, Request)] == ["ACK"]  # to the caller


def test_what_cannot_be_transferred_is_refused_and_sends_nothing() -> None:
    engine = B2bua(EDGE)
    assert engine.start_transfer("nope", AGENT_URI, AGENT, 0) == ("unknown", [])
    call = Call(engine)
    call.invite()
    assert engine.start_transfer(call.pair_id, AGENT_URI, AGENT, 0) == ("unanswered", [])
    call.answer_b()
    start(call)
    assert engine.start_transfer(call.pair_id, AGENT_URI, AGENT, 0) == ("transferring", [])
    call2 = Call()
    call2.answered()
    long_uri = "sip:" + "a" * 600 + "@203.0.113.77"
    assert call2.engine.start_transfer(call2.pair_id, long_uri, AGENT, 0) == ("target", [])


def test_a_transfer_send_goes_through_its_transactions() -> None:
    call = Call()
    call.answered()
    _, sends = call.engine.start_transfer(call.pair_id, AGENT_URI, AGENT, 0)
    assert all(isinstance(send, Send) for send in sends)
    assert call.engine.next_deadline() is not None  # the INVITE's retransmission timer


def test_a_refresh_of_the_old_leg_answered_late_does_not_touch_the_new_one() -> None:
    """The edge's UPDATE refreshing leg B is in flight when the transfer is done: B's 481 to
    it (B got its BYE) is no dead session of the call's."""
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    ok = answered_with_timer(call, "90;refresher=uac")
    caller = call.caller(ok)
    call.engine.progress.clear()
    update = requests(run_until(call, 46.0), "UPDATE")[0]  # to the gateway, at 45 s
    _, sends = call.engine.start_transfer(call.pair_id, AGENT_URI, AGENT, call.now)
    invite_c = request_to(list(sends), AGENT)
    ok_c = answer(invite_c, 200, tag=C_TAG, contact=C_CONTACT, body=SDP_C)
    reinvite = request_to(call.engine.receive(ok_c, AGENT, call.now), CALLER)
    call.from_a(answer(reinvite, 200, contact="<sip:alice@10.0.0.5:5070>", body=SDP_A2))
    actions = call.from_b(answer(update, 481))
    assert sent(actions, CALLER) == [] and sent(actions, AGENT) == []
    assert call.pair_id in call.engine.pairs
    assert request_to(call.from_a(caller.request("BYE")), AGENT).method == "BYE"
