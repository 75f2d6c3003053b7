"""The edge's own session refreshes (RFC 4028 §7.4, §9), time driven by hand: UPDATE only to
a peer whose Allow names it, else a re-INVITE offering the SDP last sent on that leg (its
answer not relayed), the fallback on 405/501 to an UPDATE, and glare (491) retried once."""

from __future__ import annotations

import pytest

from services.edge.b2bua.engine import B2bua
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.message import Request
from tests.services.edge.b2bua.support import (
    B_CONTACT,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    SDP_A,
    SDP_B,
    Agent,
    Call,
    answer,
    caller_invite,
    request_to,
    response_to,
    sent,
)
from tests.services.edge.b2bua.test_session_timer import requests, run_until

WITH_UPDATE = "INVITE, ACK, CANCEL, BYE, UPDATE"
WITHOUT_UPDATE = "INVITE, ACK, CANCEL, BYE"
SDP_A2 = SDP_A.replace(b"o=alice 1 1", b"o=alice 1 2").replace(b"s=-", b"s=held")
SDP_B2 = SDP_B.replace(b"o=gw 1 1", b"o=gw 1 2").replace(b"s=-", b"s=moved")


def timed_call(allow: str | None, session_expires: str = "90;refresher=uac") -> tuple[Call, Agent]:
    """A call whose gateway's 2xx names `session_expires` (the edge refreshing leg B) and
    `allow` (None: no Allow at all), set up and ACKed; and its caller."""
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    call.invite()
    assert call.invite_b is not None
    extra = [("Session-Expires", session_expires), ("Require", "timer")]
    if allow is not None:
        extra.append(("Allow", allow))
    ok_b = answer(call.invite_b, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B, extra=tuple(extra))
    caller = call.caller(response_to(call.from_b(ok_b), CALLER))
    call.from_a(caller.request("ACK", cseq=10))
    return call, caller


def refresh_of_leg_b(call: Call, at: float) -> Request:
    actions = run_until(call, at)
    assert not sent(actions, CALLER)
    return request_to(actions, GATEWAY)


def answered_ok(call: Call, request: Request, body: bytes = SDP_B) -> list[Request]:
    """The gateway's 2xx to `request` (its timer kept): what the engine sent to it."""
    extra = (("Session-Expires", "90;refresher=uac"),)
    actions = call.from_b(
        answer(request, 200, tag=B_TAG, contact=B_CONTACT, body=body, extra=extra)
    )
    assert not sent(actions, CALLER)  # a refresh: nothing crosses the pair
    return [m for m in sent(actions, GATEWAY) if isinstance(m, Request)]


@pytest.mark.parametrize("allow", [None, WITHOUT_UPDATE])
def test_a_gateway_not_allowing_update_is_refreshed_by_reinvite_and_the_call_lives(
    allow: str | None,
) -> None:
    call, _ = timed_call(allow)
    invite_b = call.invite_b
    assert invite_b is not None
    reinvite = refresh_of_leg_b(call, 45.0)
    assert reinvite.method == "INVITE" and reinvite.call_id == invite_b.call_id
    assert reinvite.body == SDP_A  # the SDP last sent on leg B, unchanged (RFC 3264 §8)
    assert reinvite.header("content-type") == "application/sdp"
    assert reinvite.header("session-expires") == "90;refresher=uac"
    assert reinvite.cseq.seq == invite_b.cseq.seq + 1
    (ack,) = answered_ok(call, reinvite)
    assert (ack.method, ack.cseq.seq, ack.body) == ("ACK", reinvite.cseq.seq, b"")
    seq = reinvite.cseq.seq
    for at in (90.0, 135.0, 180.0):  # each 45 s after the last 2xx, past two intervals
        actions = run_until(call, at - 0.1)
        assert not requests(actions, "BYE") and not requests(actions, "INVITE")
        again = refresh_of_leg_b(call, at)
        assert again.method == "INVITE" and again.cseq.seq == seq + 1 and again.body == SDP_A
        seq = again.cseq.seq
        answered_ok(call, again)
    assert call.pair_id in call.engine.pairs


def test_a_gateway_allowing_update_gets_updates() -> None:
    call, _ = timed_call(WITH_UPDATE)
    update = refresh_of_leg_b(call, 45.0)
    assert update.method == "UPDATE" and not update.body


def test_the_refreshs_answer_is_not_relayed_and_its_2xx_again_is_acked_again() -> None:
    call, _ = timed_call(WITHOUT_UPDATE)
    reinvite = refresh_of_leg_b(call, 45.0)
    extra = (("Session-Expires", "90;refresher=uac"),)
    ok = answer(reinvite, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B2, extra=extra)
    first = call.from_b(ok)
    assert reinvite.method == "INVITE" and requests(first, "ACK")
    assert not sent(first, CALLER)  # its answer (here a different one) stays on leg B
    again = call.from_b(ok)
    assert not sent(again, CALLER)
    assert [m.to_bytes() for m in sent(again, GATEWAY)] == [
        m.to_bytes() for m in sent(first, GATEWAY)
    ]


@pytest.mark.parametrize("status", [405, 501])
def test_an_update_refused_as_not_allowed_is_sent_again_as_a_reinvite(status: int) -> None:
    call, _ = timed_call(WITH_UPDATE)
    update = refresh_of_leg_b(call, 45.0)
    assert update.method == "UPDATE"
    refused = answer(update, status, tag=B_TAG, extra=(("Allow", WITHOUT_UPDATE),))
    reinvite = request_to(call.from_b(refused), GATEWAY)
    assert reinvite.method == "INVITE" and reinvite.body == SDP_A
    assert reinvite.cseq.seq == update.cseq.seq + 1
    answered_ok(call, reinvite)
    assert not requests(run_until(call, 89.9), "BYE")
    assert refresh_of_leg_b(call, 90.0).method == "INVITE"  # noted for the next refreshes


def test_the_reinvite_offers_the_sdp_last_sent_on_that_leg() -> None:
    call, agent = timed_call(WITHOUT_UPDATE)
    call.now = 10.0
    out = request_to(call.from_a(agent.request("INVITE", SDP_A2)), GATEWAY)  # a hold, say
    timer = (("Session-Expires", "90;refresher=uac"),)
    ok = answer(out, 200, tag=B_TAG, body=SDP_B2, extra=timer)
    back = response_to(call.from_b(ok), CALLER)
    call.from_a(agent.request("ACK", cseq=agent.cseq))
    assert back.body == SDP_B2
    reinvite = refresh_of_leg_b(call, 55.0)  # 45 s after the relayed re-INVITE's 2xx
    assert reinvite.method == "INVITE" and reinvite.body == SDP_A2


def test_the_edge_refreshing_the_callers_leg_offers_the_answer_it_sent_there() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=1800)))
    call.invite(caller_invite(extra=(("Session-Expires", "300"),)))  # no timer support
    ok = response_to(call.answer_b(), CALLER)
    assert ok.header("session-expires") == "300;refresher=uas"  # the edge refreshes leg A
    call.from_a(call.caller(ok).request("ACK", cseq=10))
    reinvite = request_to(run_until(call, 150.0), CALLER)
    assert reinvite.method == "INVITE" and reinvite.body == SDP_B


def test_a_491_is_tried_again_once_after_the_glare_delay() -> None:
    call, _ = timed_call(WITHOUT_UPDATE)
    reinvite = refresh_of_leg_b(call, 45.0)
    glare = call.from_b(answer(reinvite, 491, tag=B_TAG))
    assert not requests(glare, "INVITE")  # its ACK only
    assert not requests(run_until(call, 45.0 + 2.09), "INVITE")  # §14.1: 2.1 s at least
    second = requests(run_until(call, 45.0 + 4.0), "INVITE")
    (retry,) = {m.cseq.seq: m for m in second}.values()  # (its retransmissions aside)
    assert retry.body == SDP_A and retry.cseq.seq == reinvite.cseq.seq + 1
    call.from_b(answer(retry, 491, tag=B_TAG))
    later = run_until(call, 59.9)
    assert not {m.cseq.seq for m in requests(later, "INVITE")} - {retry.cseq.seq}  # once
    assert not requests(later, "BYE")
    assert requests(run_until(call, 60.0), "BYE")  # left to the leg's expiry


def test_the_peers_offer_meeting_the_refresh_gets_491() -> None:
    call, _ = timed_call(WITHOUT_UPDATE)
    refresh_of_leg_b(call, 45.0)
    gateway = call.gateway()
    actions = call.from_b(gateway.request("INVITE", SDP_B2))
    assert response_to(actions, GATEWAY).status == 491
    assert not sent(actions, CALLER)


def test_a_refresh_due_while_an_offer_crosses_the_pair_waits_for_it() -> None:
    call, agent = timed_call(WITHOUT_UPDATE)
    call.now = 44.0
    out = request_to(call.from_a(agent.request("INVITE", SDP_A2)), GATEWAY)
    crossing = requests(run_until(call, 45.0), "INVITE")  # the caller's offer is out:
    assert {m.cseq.seq for m in crossing} <= {out.cseq.seq}  # its retransmissions only
    call.from_b(answer(out, 491, tag=B_TAG))  # and refused: the session as before
    call.from_a(agent.request("ACK", cseq=agent.cseq))
    retried = requests(run_until(call, 45.0 + 4.0), "INVITE")
    assert retried and retried[0].body == SDP_A  # the refused offer's SDP is not the session
