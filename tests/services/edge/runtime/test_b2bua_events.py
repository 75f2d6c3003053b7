"""A B2BUA call's events: as a proxied call's, under the caller's Call-ID and tag (sans-IO)."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

from services.edge.proxy.actions import HandOff, Publish, Send
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy
from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.b2bua_runner import B2buaRunner
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    CallStarted,
    CallTransferred,
)
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.b2bua.support import answer as b2b_answer
from tests.services.edge.proxy.test_core import CALLER, EDGE, GW1, GW2, UDP_IN, answer, invite
from tests.services.edge.runtime.test_b2bua_runner import b2bua_proxy, failover_run


class Call:
    """A proxy and its runner with call events on, what each message sent and published."""

    def __init__(self, proxy: Proxy, runner: B2buaRunner | None) -> None:
        assert runner is not None
        proxy.call_events = CallEvents("edge-1")
        self.proxy, self.runner = proxy, B2buaRunner(proxy)  # the runner reads call_events
        self.events: list[CallEvent] = []

    def feed(self, data: bytes, source: Destination, now: float) -> list[Request | Response]:
        """`data` in as the driver feeds it; what went out toward any address."""
        actions: list[Send | Publish] = []
        for action in self.proxy.receive(data, source, UDP_IN, now):
            if isinstance(action, HandOff):
                actions += self.runner.hand_off(action, now)
            elif isinstance(action, Send | Publish):
                actions.append(action)
        return self._seen(actions)

    def expire(self, now: float) -> list[Request | Response]:
        return self._seen(self.runner.expire(now))

    def _seen(self, actions: list[Send | Publish]) -> list[Request | Response]:
        for action in actions:
            if isinstance(action, Publish):
                assert isinstance(action.event, CallEvent)
                self.events.append(action.event)
        return [parse_message(a.data) for a in actions if isinstance(a, Send)]

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


def leg_b_invite(messages: list[Request | Response]) -> Request:
    [out] = [m for m in messages if isinstance(m, Request) and m.method == "INVITE"]
    return out


def bye_from_gateway(out: Request) -> bytes:
    return (
        f"BYE sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {GW2.host}:5060;branch=z9hG4bKg1\r\n"
        f"From: {out.header('to')};tag=gw\r\nTo: {out.header('from')}\r\n"
        f"Call-ID: {out.call_id}\r\nCSeq: 5 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def bye_from_caller(tag: str) -> bytes:
    return (
        f"BYE sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKb1\r\n"
        f"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:4420@example.com>;tag={tag}\r\n"
        "Call-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answered(call: Call) -> tuple[Request, str]:
    """A call to 4420 (rule r44, gateway 2) rung and answered: leg B's INVITE, A's tag."""
    out = leg_b_invite(call.feed(invite(f"sip:4420@{EDGE}"), CALLER, 100.0))
    call.feed(answer(out, 180), GW2, 100.1)
    call.feed(answer(out, 180), GW2, 100.15)  # a retransmission: no second ringing
    ok = call.feed(answer(out, 200), GW2, 100.2)
    [to_caller] = [m for m in ok if isinstance(m, Response) and m.status == 200]
    call.feed(answer(out, 200), GW2, 100.25)  # the 2xx again: no second branch or answer
    return out, to_caller.to_tag or ""


def test_an_answered_call_reports_start_ringing_branch_answer_and_the_callers_bye() -> None:
    call = Call(*b2bua_proxy())
    out, tag = answered(call)
    call.feed(bye_from_caller(tag), CALLER, 130.0)
    assert call.kinds() == [
        "CallStarted", "CallRinging", "BranchTried", "CallAnswered", "CallEnded",
    ]  # fmt: skip # the call's events on one line
    assert {(e.call_id, getattr(e, "from_tag", None)) for e in call.events} == {("call-1", "a1")}
    started, ringing, branch, answer_, ended = call.events
    assert isinstance(started, CallStarted) and started.mode == "b2bua"
    assert (started.rule, started.caller) == ("r44", "sip:alice@example.com")
    assert isinstance(branch, BranchTried)
    assert (branch.target, branch.status, branch.sent_at, branch.at) == ("2", 200, 100.0, 100.2)
    assert isinstance(ringing, CallRinging) and ringing.status == 180
    assert isinstance(answer_, CallAnswered)
    assert (answer_.target, answer_.to_tag, answer_.at) == ("2", tag, 100.2)
    assert answer_.b2bua_leg_call_id == out.call_id != "call-1"
    assert answer_.caller_leg is None  # no hang-up from the records: the engine holds it
    assert isinstance(ended, CallEnded)
    assert (ended.from_tag, ended.to_tag, ended.at, ended.by_edge) == ("a1", tag, 130.0, False)


def test_the_gateways_bye_is_the_callee_hanging_up() -> None:
    call = Call(*b2bua_proxy())
    out, tag = answered(call)
    call.feed(bye_from_gateway(out), GW2, 140.0)
    ended = call.events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.call_id, ended.from_tag, ended.to_tag) == ("call-1", tag, "a1")


def test_failover_is_one_branch_per_gateway_tried() -> None:
    call = Call(*failover_run())
    first = leg_b_invite(call.feed(invite(), CALLER, 100.0))
    second = leg_b_invite(call.feed(answer(first, 503), GW1, 100.1))
    call.feed(answer(second, 200), GW2, 100.3)
    branches = [e for e in call.events if isinstance(e, BranchTried)]
    assert [(b.target, b.status, b.sent_at) for b in branches] == [
        ("1", 503, 100.0),
        ("2", 200, 100.1),
    ]
    assert [b.address for b in branches] == ["203.0.113.1:5060", "203.0.113.2:5060"]
    [answer_] = [e for e in call.events if isinstance(e, CallAnswered)]
    assert (answer_.target, answer_.b2bua_leg_call_id) == ("2", second.call_id)


def test_a_failovers_events_keep_their_order_when_the_wall_offset_is_measured_anew() -> None:
    """The runtime re-measures the offset while a call goes on; a measurement 3 ms lower (the
    process preempted between its clock reads) must not stamp the second leg B's branch, sent
    0.4 ms after the first, before it: a call's events are stamped on its first offset."""
    call = Call(*failover_run())
    events = call.proxy.call_events
    assert isinstance(events, CallEvents)
    first = leg_b_invite(call.feed(invite(), CALLER, 100.0))
    second = leg_b_invite(call.feed(answer(first, 503), GW1, 100.0004))
    events.wall_offset = -0.003
    call.feed(answer(second, 200), GW2, 100.0008)
    branches = [e for e in call.events if isinstance(e, BranchTried)]
    assert [(b.target, b.sent_at, b.at) for b in branches] == [
        ("1", 100.0, 100.0),
        ("2", 100.0, 100.001),
    ]
    [answer_] = [e for e in call.events if isinstance(e, CallAnswered)]
    assert answer_.at == 100.001


def test_a_refusal_relayed_and_the_edges_own_timeout_are_failures_of_their_origin() -> None:
    call = Call(*failover_run())
    first = leg_b_invite(call.feed(invite(), CALLER, 100.0))
    call.feed(answer(first, 486), GW1, 100.1)
    assert call.kinds() == ["CallStarted", "BranchTried", "CallFailed"]
    failed = call.events[-1]
    assert isinstance(failed, CallFailed)
    assert (failed.status, failed.origin, failed.cause) == (486, "upstream", None)

    call = Call(*b2bua_proxy())  # one gateway, silent: our own 408
    call.feed(invite(f"sip:4420@{EDGE}"), CALLER, 100.0)
    for step in range(1, 70):
        call.expire(100.0 + step)
    assert call.kinds() == ["CallStarted", "BranchTried", "CallFailed"]
    failed = call.events[-1]
    assert isinstance(failed, CallFailed)
    assert (failed.status, failed.origin, failed.cause) == (408, "edge", "timeout")


def test_the_callers_cancel_is_cancelled() -> None:
    call = Call(*b2bua_proxy())
    out = leg_b_invite(call.feed(invite(f"sip:4420@{EDGE}"), CALLER, 100.0))
    call.feed(answer(out, 180), GW2, 100.1)
    cancel = (
        f"CANCEL sip:4420@{EDGE} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKc1;rport\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:14075551234@example.com>\r\n"
        "Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    call.feed(cancel, CALLER, 101.0)
    assert call.kinds() == ["CallStarted", "CallRinging", "CallCancelled"]
    cancelled = call.events[-1]
    assert isinstance(cancelled, CallCancelled) and cancelled.at == 101.0


def test_with_call_events_off_nothing_is_published() -> None:
    proxy, runner = b2bua_proxy()
    assert runner is not None
    sends = []
    for action in proxy.receive(invite(f"sip:4420@{EDGE}"), CALLER, UDP_IN, 100.0):
        assert not isinstance(action, Publish)
        if isinstance(action, HandOff):
            sends += runner.hand_off(action, 100.0)
    assert sends and all(isinstance(s, Send) for s in sends)
    assert not runner.engine.progress


def test_a_hang_up_from_the_api_byes_both_legs_with_their_own_cseqs() -> None:
    """The engine ends the call it holds: leg A's BYE from the edge's tag on it (its first
    request there: CSeq 1), leg B's with leg B's next CSeq (the INVITE's + 1)."""
    call = Call(*b2bua_proxy())
    out, tag = answered(call)
    delivered: list[Send | Publish] = []
    ended = asyncio.run(call.runner.hang_up("call-1", tag, delivered.extend))
    assert ended is True
    byes = {s.destination: parse_message(s.data) for s in delivered if isinstance(s, Send)}
    to_caller, to_gateway = byes[CALLER], byes[GW2]
    assert isinstance(to_caller, Request) and isinstance(to_gateway, Request)
    assert (to_caller.method, to_caller.call_id, to_caller.cseq.seq) == ("BYE", "call-1", 1)
    assert (to_caller.from_tag, to_caller.to_tag) == (tag, "a1")
    assert (to_gateway.method, to_gateway.call_id) == ("BYE", out.call_id)
    assert (to_gateway.cseq.seq, to_gateway.to_tag) == (out.cseq.seq + 1, "gw")
    [event] = [a.event for a in delivered if isinstance(a, Publish)]
    assert isinstance(event, CallEnded) and event.by_edge and event.call_id == "call-1"
    again: list[Send | Publish] = []
    assert asyncio.run(call.runner.hang_up("call-1", tag, again.extend)) is False
    assert asyncio.run(call.runner.hang_up("no-such-call", tag, again.extend)) is False
    assert again == []


def test_a_hang_up_of_a_call_not_answered_yet_or_another_workers_does_nothing(
    tmp_path: Path,
) -> None:
    call = Call(*b2bua_proxy())
    call.feed(invite(f"sip:4420@{EDGE}"), CALLER, 100.0)
    nothing: list[Send | Publish] = []
    assert asyncio.run(call.runner.hang_up("call-1", "any", nothing.extend)) is False
    proxy, _ = b2bua_proxy()
    index = 1 - zlib.crc32(b"call-1") % 2  # the worker call-1 does not hash to
    elsewhere = B2buaRunner(proxy, WorkerGroup(index, 2, tmp_path))
    assert asyncio.run(elsewhere.hang_up("call-1", "any", nothing.extend)) is False
    assert nothing == []


def test_an_invite_the_engine_refuses_itself_is_a_failure_of_the_edge() -> None:
    """The proxy passes a required extension on; the engine supports none: 420, and the
    record has its end at once (not a timeout close)."""
    call = Call(*b2bua_proxy())
    answers = call.feed(invite(f"sip:4420@{EDGE}", "Require: 100rel\r\n"), CALLER, 100.0)
    assert [m.status for m in answers if isinstance(m, Response)] == [100, 420]
    assert call.kinds() == ["CallStarted", "CallFailed"]
    failed = call.events[-1]
    assert isinstance(failed, CallFailed)
    assert (failed.status, failed.origin, failed.cause) == (420, "edge", "rejected")


AGENT = Destination("udp", "203.0.113.77", 5070)
SDP = b"v=0\r\no=x 1 1 IN IP4 203.0.113.77\r\ns=-\r\nc=IN IP4 203.0.113.77\r\nt=0 0\r\n"


def caller_ack(tag: str) -> bytes:
    """The caller's ACK of the edge's 2xx to call-1."""
    return (
        f"ACK sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKk1\r\n"
        f"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:4420@example.com>;tag={tag}\r\n"
        "Call-ID: call-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def transfer(call: Call, tag: str, to: str = "sip:agent7@203.0.113.77:5070") -> Request:
    """The caller's ACK, then the runner begins the transfer of call-1 (as the API asks it):
    leg C's INVITE."""
    call.feed(caller_ack(tag), CALLER, 120.0)
    delivered: list[Send | Publish] = []
    why, leg = asyncio.run(call.runner.transfer("call-1", tag, to, delivered.extend))
    assert why == "" and leg
    [out] = call._seen(delivered)
    assert isinstance(out, Request) and out.call_id == leg and out.uri_text == to
    assert call.runner.calls[leg] == call.runner.calls["call-1"]  # its answers are the pair's
    return out


def test_a_transfer_done_is_reported_under_the_callers_call_id() -> None:
    call = Call(*b2bua_proxy())
    out, tag = answered(call)
    invite_c = transfer(call, tag)
    [reinvite] = call.feed(
        b2b_answer(invite_c, 200, tag="ag", contact="<sip:a@x>", body=SDP), AGENT, 150.0
    )
    assert isinstance(reinvite, Request) and reinvite.call_id == "call-1" and reinvite.body == SDP
    sent = call.feed(
        b2b_answer(reinvite, 200, contact="<sip:alice@10.0.0.5>", body=SDP), CALLER, 151.0
    )
    assert sorted(m.method for m in sent if isinstance(m, Request)) == ["ACK", "ACK", "BYE"]
    transferred = call.events[-1]
    assert isinstance(transferred, CallTransferred)
    assert (transferred.call_id, transferred.from_tag, transferred.to_tag) == ("call-1", "a1", tag)
    assert (transferred.ok, transferred.status, transferred.failed_at) == (True, 200, None)
    assert transferred.b2bua_leg_call_id == invite_c.call_id
    assert transferred.replaced_leg_call_id == out.call_id
    # The caller's BYE now ends the call at the agent.
    [_, bye] = call.feed(bye_from_caller(tag), CALLER, 160.0)
    assert isinstance(bye, Request) and bye.call_id == invite_c.call_id
    assert isinstance(call.events[-1], CallEnded)


def test_a_transfer_failed_is_reported_and_the_call_stays() -> None:
    call = Call(*b2bua_proxy())
    out, tag = answered(call)
    invite_c = transfer(call, tag)
    call.feed(b2b_answer(invite_c, 486, tag="ag"), AGENT, 150.0)
    transferred = call.events[-1]
    assert isinstance(transferred, CallTransferred)
    assert (transferred.ok, transferred.status, transferred.failed_at) == (False, 486, "target")
    assert transferred.replaced_leg_call_id is None
    [_, bye] = call.feed(bye_from_caller(tag), CALLER, 160.0)
    assert isinstance(bye, Request) and bye.call_id == out.call_id


def test_a_transfer_of_another_workers_or_an_unknown_call_begins_nothing(tmp_path: Path) -> None:
    call = Call(*b2bua_proxy())
    _, tag = answered(call)
    nothing: list[Send | Publish] = []
    assert asyncio.run(
        call.runner.transfer("call-1", "cmb2bnot", "sip:a@192.0.2.1", nothing.extend)
    ) == ("elsewhere", "")
    assert asyncio.run(call.runner.transfer("nosuch", tag, "sip:a@192.0.2.1", nothing.extend)) == (
        "elsewhere",
        "",
    )
    proxy, _ = b2bua_proxy()
    index = 1 - zlib.crc32(b"call-1") % 2
    elsewhere = B2buaRunner(proxy, WorkerGroup(index, 2, tmp_path))
    assert asyncio.run(elsewhere.transfer("call-1", tag, "sip:a@192.0.2.1", nothing.extend)) == (
        "elsewhere",
        "",
    )
    transfer(call, tag)
    assert asyncio.run(call.runner.transfer("call-1", tag, "sip:a@192.0.2.1", nothing.extend)) == (
        "transferring",
        "",
    )
    assert nothing == []
