"""Session timers (RFC 4028) on a pair's legs, time driven by hand: the offer on leg B,
422 below our Min-SE, the refresher negotiated, the edge's UPDATE refreshes, and the
call ended (BYE on both legs) when a leg's session expires."""

from __future__ import annotations

import pytest

from services.edge.b2bua.engine import Action, B2bua, Originate
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.message import Request, Response
from tests.services.edge.b2bua.support import (
    B_CONTACT,
    B_TAG,
    CALLER,
    EDGE,
    GATEWAY,
    SDP_A,
    SDP_B,
    Call,
    answer,
    caller_invite,
    request_to,
    response_to,
    sent,
)

TIMER = (("Supported", "timer"),)
ALLOW_UPDATE = (("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE"),)
"""A peer's Allow naming UPDATE: the edge's refreshes are UPDATEs (else re-INVITEs,
`test_refreshing`)."""


def run_until(call: Call, until: float) -> list[Action]:
    """Fire the engine's timers, deadline by deadline, up to `until`."""
    actions: list[Action] = []
    while (deadline := call.engine.next_deadline()) is not None and deadline <= until:
        call.now = deadline
        actions += call.engine.expire(deadline)
    call.now = until
    return actions


def requests(actions: list[Action], method: str) -> list[Request]:
    return [m for m in sent(actions) if isinstance(m, Request) and m.method == method]


def answered_with_timer(call: Call, session_expires: str) -> Response:
    """Set up a call whose gateway's 2xx names `session_expires`; the 2xx to the caller."""
    call.invite()
    assert call.invite_b is not None
    extra = (("Session-Expires", session_expires), ("Require", "timer"), *ALLOW_UPDATE)
    ok_b = answer(call.invite_b, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B, extra=extra)
    ok = response_to(call.from_b(ok_b), CALLER)
    call.from_a(call.caller(ok).request("ACK", cseq=10))
    return ok


def test_leg_bs_invite_offers_the_policys_timer() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=600, min_se=120)))
    call.invite()
    invite = call.invite_b
    assert invite is not None
    assert invite.header("supported") == "timer"
    assert invite.header("session-expires") == "600;refresher=uac"
    assert invite.header("min-se") == "120"


def test_an_interval_set_below_the_min_se_is_raised_to_it() -> None:
    policy = TimerPolicy(session_expires=90, min_se=300)
    assert dict(policy.offer())["Session-Expires"] == "300;refresher=uac"
    call = Call(B2bua(EDGE, policy=policy))
    call.invite(caller_invite(extra=(("Session-Expires", "400"), *TIMER)))
    ok = response_to(call.answer_b(), CALLER)
    assert ok.header("session-expires") == "300;refresher=uac"


def test_a_session_interval_below_our_min_se_is_422_naming_it() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(min_se=300)))
    actions = call.from_a(caller_invite(extra=(("Session-Expires", "120"), *TIMER)))
    assert not [a for a in actions if isinstance(a, Originate)]
    refused = response_to(actions, CALLER)
    assert (refused.status, refused.header("min-se")) == (422, "300")


@pytest.mark.parametrize("value", ["soon", "²", "1e3", "90;refresher=them", "90;;"])
def test_an_unreadable_session_expires_is_400(value: str) -> None:
    call = Call()
    actions = call.from_a(caller_invite(extra=(("Session-Expires", value),)))
    assert response_to(actions, CALLER).status == 400


def test_the_edge_refreshes_leg_b_at_half_the_interval_and_a_2xx_keeps_the_call() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    answered_with_timer(call, "90;refresher=uac")
    assert not run_until(call, 44.9)
    update = request_to(run_until(call, 45.0), GATEWAY)
    assert update.method == "UPDATE" and not update.body
    assert update.header("session-expires") == "90;refresher=uac"
    extra = (("Session-Expires", "90;refresher=uac"),)
    call.from_b(answer(update, 200, tag=B_TAG, contact=B_CONTACT, extra=extra))
    later = run_until(call, 89.9)  # past the first interval's expiry (60 s): no BYE
    assert not requests(later, "BYE")
    assert request_to(run_until(call, 90.0), GATEWAY).method == "UPDATE"  # 45 s after the 2xx
    assert call.pair_id in call.engine.pairs


def test_a_gateway_that_vanished_is_hung_up_on_both_legs() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    answered_with_timer(call, "90;refresher=uac")
    pair = call.engine.pairs[call.pair_id]
    actions = run_until(call, 59.9)  # the UPDATE at 45 s and its retransmissions
    assert requests(actions, "UPDATE") and not requests(actions, "BYE")
    byes = requests(run_until(call, 60.0), "BYE")  # 90 - min(32, 90/3)
    assert sorted(bye.call_id for bye in byes) == sorted([pair.a.call_id, pair.b.call_id])
    assert call.pair_id not in call.engine.pairs


def test_a_refresh_answered_481_ends_the_call_at_once() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    answered_with_timer(call, "90;refresher=uac")
    pair = call.engine.pairs[call.pair_id]
    update = request_to(run_until(call, 45.0), GATEWAY)
    actions = call.from_b(answer(update, 481, tag=B_TAG))
    assert {bye.call_id for bye in requests(actions, "BYE")} == {pair.a.call_id, pair.b.call_id}


def test_a_gateway_refreshing_itself_keeps_the_call_and_its_silence_ends_it() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=1800)))
    answered_with_timer(call, "120;refresher=uas")  # the gateway, leg B's UAS, refreshes
    gateway = call.gateway()
    call.now = 50.0
    refresh = gateway.request("UPDATE", extra=(("Session-Expires", "120;refresher=uac"), *TIMER))
    out = request_to(call.from_b(refresh), CALLER)  # relayed to the caller, who has no timer
    ok = response_to(call.from_a(answer(out, 200, tag="x")), GATEWAY)
    assert ok.header("session-expires") == "120;refresher=uac"
    assert not sent(run_until(call, 50 + 87.9))  # no UPDATE of the edge's: not its turn
    assert requests(run_until(call, 50 + 88.0), "BYE")  # 120 - 32 after its last refresh


def test_no_session_expires_in_the_gateways_2xx_means_no_timer_on_leg_b() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90)))
    call.answered()
    assert call.engine.next_deadline() is None or not run_until(call, 4 * 3600)
    assert call.pair_id in call.engine.pairs


def test_the_callers_interval_and_refresher_are_honoured_and_its_silence_ends_the_call() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=1800)))
    call.invite(caller_invite(extra=(("Session-Expires", "120"), ("Min-SE", "100"), *TIMER)))
    ok = response_to(call.answer_b(), CALLER)
    assert ok.header("session-expires") == "120;refresher=uac"  # the caller refreshes
    assert ok.header("require") == "timer"
    caller = call.caller(ok)
    call.from_a(caller.request("ACK", cseq=10))
    gateway = call.gateway()
    refresh = caller.request("INVITE", SDP_A, extra=(("Session-Expires", "120"), *TIMER))
    call.now = 50.0
    out = request_to(call.from_a(refresh), GATEWAY)
    assert out.header("session-expires") is None  # no timer on leg B: the gateway has none
    ok_b = answer(out, 200, tag=B_TAG, contact=B_CONTACT, body=SDP_B)
    again = response_to(call.from_b(ok_b), CALLER)
    assert again.header("session-expires") == "120;refresher=uac"
    call.from_a(caller.request("ACK", cseq=caller.cseq))
    assert not requests(run_until(call, 50 + 87.9), "BYE")  # 120 - 32 after the refresh
    byes = requests(run_until(call, 50 + 88.0), "BYE")
    assert {bye.call_id for bye in byes} == {caller.call_id, gateway.call_id}


def test_a_caller_without_timer_support_gets_the_edge_as_refresher() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=1800)))
    call.invite(caller_invite(extra=(("Session-Expires", "300"), *ALLOW_UPDATE)))  # its proxy's
    ok = response_to(call.answer_b(), CALLER)
    assert ok.header("session-expires") == "300;refresher=uas"
    assert ok.header("require") is None
    call.from_a(call.caller(ok).request("ACK", cseq=10))
    update = request_to(run_until(call, 150.0), CALLER)
    assert update.method == "UPDATE" and update.header("session-expires") == "300;refresher=uac"


def test_a_422_from_the_gateway_is_asked_again_once_with_its_min_se() -> None:
    call = Call()
    call.invite()
    first = call.invite_b
    assert first is not None
    too_small = answer(first, 422, tag=B_TAG, extra=(("Min-SE", "3600"),))
    (second,) = requests(call.from_b(too_small), "INVITE")  # beside the 422's ACK
    assert second.call_id == first.call_id
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.header("session-expires") == "3600;refresher=uac"
    assert second.body == first.body
    refused = call.from_b(answer(second, 422, tag=B_TAG, extra=(("Min-SE", "3600"),)))
    assert response_to(refused, CALLER).status == 422


def test_require_timer_is_supported_in_a_call() -> None:
    call = Call()
    caller, _ = call.answered()
    extra = (("Require", "timer"), ("Session-Expires", "1800;refresher=uac"))
    actions = call.from_a(caller.request("INVITE", SDP_A, extra=extra))
    assert request_to(actions, GATEWAY).method == "INVITE"


def test_the_scale_shrinks_the_clock_not_the_headers() -> None:
    call = Call(B2bua(EDGE, policy=TimerPolicy(session_expires=90, scale=0.1)))
    answered_with_timer(call, "90;refresher=uac")
    update = request_to(run_until(call, 4.5), GATEWAY)
    assert update.header("session-expires") == "90;refresher=uac"
    assert requests(run_until(call, 6.0), "BYE")
