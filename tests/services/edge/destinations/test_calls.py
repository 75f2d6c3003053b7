"""Active calls per destination: counted from the INVITE, ended by a failure or the BYE."""

from __future__ import annotations

from services.edge.destinations import ActiveCalls
from services.edge.proxy.core import Proxy
from tests.services.edge.destinations.support import BOX1, BOX1_URI, BOX2, BOX2_URI, farm, farm_run
from tests.services.edge.proxy.test_core import answer, invite, only_request, signed


def test_counts_follow_invites_failures_and_byes() -> None:
    calls = ActiveCalls(max_age=100.0)
    calls.branch_sent("farm", "sip:a", "INVITE", "c1", 0.0)
    calls.branch_sent("farm", "sip:a", "INVITE", "c2", 1.0)
    calls.branch_sent("farm", "sip:a", "OPTIONS", "o1", 1.0)
    assert dict(calls.of_set("farm")) == {"sip:a": 2}
    calls.branch_failed("farm", "sip:a", "c1")
    calls.branch_sent("farm", "sip:b", "INVITE", "c1", 2.0)  # failed over to b
    assert dict(calls.of_set("farm")) == {"sip:a": 1, "sip:b": 1}
    calls.branch_failed("farm", "sip:a", "c1")  # a late report for the old branch: no effect
    assert dict(calls.of_set("farm")) == {"sip:a": 1, "sip:b": 1}
    calls.call_ended("c2")
    calls.call_ended("c2")
    assert dict(calls.of_set("farm")) == {"sip:b": 1}
    assert dict(calls.of_set("other")) == {}


def test_calls_whose_end_was_never_seen_expire() -> None:
    calls = ActiveCalls(max_age=10.0)
    calls.branch_sent("farm", "sip:a", "INVITE", "old", 0.0)
    calls.branch_sent("farm", "sip:a", "INVITE", "new", 5.0)
    calls.branch_sent("farm", "sip:b", "INVITE", "newest", 10.5)
    assert dict(calls.of_set("farm")) == {"sip:a": 1, "sip:b": 1}
    calls.call_ended("old")  # already expired: no effect
    assert dict(calls.of_set("farm")) == {"sip:a": 1, "sip:b": 1}


def bye(proxy: Proxy, call_id: str) -> bytes:
    return (
        f"BYE sip:gw@{BOX1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye{call_id}\r\n"
        f"Route: {signed(proxy, call_id)}, <sip:{BOX1.host};lr>\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_least_calls_through_the_proxy() -> None:
    run, _sets, calls = farm_run(farm("least_calls"))

    def call(call_id: str) -> bytes:
        return invite(branch=f"z9hG4bK{call_id}").replace(
            b"Call-ID: call-1", f"Call-ID: {call_id}".encode()
        )

    first = only_request(run.send(call("one")), BOX1)
    run.send(answer(first, 200), BOX1)
    second = only_request(run.send(call("two")), BOX2)  # BOX1 has one call
    run.send(answer(second, 486), BOX2)  # busy: not a call there
    assert dict(calls.of_set("farm")) == {BOX1_URI: 1}
    third = only_request(run.send(call("three")), BOX2)
    run.send(answer(third, 200), BOX2)
    assert dict(calls.of_set("farm")) == {BOX1_URI: 1, BOX2_URI: 1}
    run.send(bye(run.proxy, "one"))
    assert dict(calls.of_set("farm")) == {BOX2_URI: 1}
    fourth = only_request(run.send(call("four")), BOX1)
    assert fourth.call_id == "four"
    assert only_request(run.later(2.1), BOX2).call_id == "four"  # no answer: on to BOX2
    assert dict(calls.of_set("farm")) == {BOX2_URI: 2}
