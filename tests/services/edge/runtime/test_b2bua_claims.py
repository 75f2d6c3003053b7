"""Which messages under a B2BUA pair's caller Call-ID are the pair's: a Call-ID is the
caller's choice, so another caller may use it, and the caller's retry is a new call."""

from __future__ import annotations

from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import CALLER, EDGE, GW1, GW2, answer, invite
from tests.services.edge.runtime.test_b2bua_runner import b2bua_proxy, parsed, through

B2BUA_CALL = f"sip:4420@{EDGE}"
STRANGER = Destination("udp", "10.9.9.9", 5060)


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def test_the_callers_retry_after_the_far_end_asked_for_credentials_is_a_new_call() -> None:
    """Leg B answered 407: the caller's next INVITE (same Call-ID, CSeq 2) goes out as a new
    leg B, not 482 for 32 s."""
    proxy, runner = b2bua_proxy()
    assert runner is not None
    [out] = parsed(through(proxy, runner, invite(B2BUA_CALL), CALLER, 100.0), GW2)
    assert isinstance(out, Request)
    challenge = 'Proxy-Authenticate: Digest realm="x", nonce="n"\r\n'
    refused = through(proxy, runner, answer(out, 407, challenge), GW2, 100.1)
    assert 407 in statuses(parsed(refused, CALLER))
    retry = invite(B2BUA_CALL, branch="z9hG4bKc2").replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE")
    again = through(proxy, runner, retry, CALLER, 101.0)
    assert 482 not in statuses(parsed(again, CALLER))
    [second] = [m for m in parsed(again, GW2) if isinstance(m, Request)]
    assert second.method == "INVITE" and second.call_id != out.call_id


def test_another_caller_using_a_live_pairs_call_id_does_not_take_the_pair_over() -> None:
    proxy, runner = b2bua_proxy()
    assert runner is not None
    [out] = parsed(through(proxy, runner, invite(B2BUA_CALL), CALLER, 100.0), GW2)
    assert isinstance(out, Request)
    theirs = invite(B2BUA_CALL, branch="z9hG4bKzz").replace(b"tag=a1", b"tag=zz")
    refused = through(proxy, runner, theirs, STRANGER, 100.5)
    assert 482 in statuses(parsed(refused, STRANGER))
    answered = through(proxy, runner, answer(out, 200), GW2, 101.0)  # the pair goes on
    assert 200 in statuses(parsed(answered, CALLER))


def test_a_proxied_call_keeps_its_answer_when_a_pair_takes_its_call_id() -> None:
    """A proxied call, then a b2bua-routed INVITE of another caller under its Call-ID: the
    proxied call's 200 (its caller's tag) is still relayed by the proxy, not swallowed."""
    proxy, runner = b2bua_proxy()
    assert runner is not None
    [forwarded] = parsed(through(proxy, runner, invite(), CALLER, 100.0), GW1)
    theirs = invite(B2BUA_CALL, branch="z9hG4bKzz").replace(b"tag=a1", b"tag=zz")
    through(proxy, runner, theirs, STRANGER, 100.5)
    assert isinstance(forwarded, Request)
    relayed = through(proxy, runner, answer(forwarded, 200), GW1, 101.0)
    assert 200 in statuses(parsed(relayed, CALLER))
