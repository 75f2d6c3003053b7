"""A B2BUA pair's SDP through rtpengine (sans-IO, rtpengine's replies made up): the caller's
offer before leg B's INVITE, the answers before they cross, re-INVITEs both ways, the
session deleted when the pair ends, and rtpengine failing as the proxy's relay fails."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

from services.edge.proxy.actions import HandOff, Media, Publish, Send
from services.edge.proxy.media import MediaSettings, Policy
from services.edge.runtime.b2bua_runner import B2buaRunner
from services.edge.runtime.b2bua_state import PairWriter
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import CALLER, EDGE, GW2, answer
from tests.services.edge.proxy.test_core import invite as bare_invite
from tests.services.edge.proxy.test_relay import GW_RELAYED, GW_SDP, RELAYED, SDP, sdp, with_sdp
from tests.services.edge.runtime.test_b2bua_runner import b2bua_proxy, through


class Kept:
    """A `PairWriter` and its `PairStates` without Redis: each leg's dialog finds the record
    last saved."""

    def __init__(self) -> None:
        self.states = self
        self.records: dict[tuple[str, str], dict[str, str]] = {}

    def save(self, record: Mapping[str, str]) -> None:
        for side in "ab":
            self.records[record[f"{side}_call_id"], record[f"{side}_local_tag"]] = dict(record)

    def delete(self, record: Mapping[str, str]) -> None:
        pass

    async def load(self, call_id: str, tag: str) -> dict[str, str] | None:
        return self.records.get((call_id, tag))

    async def stop(self) -> None:
        pass


class RelayedPair:
    """A proxy whose rule 44 is b2bua mode, its runner, and what the runner asked rtpengine."""

    def __init__(
        self, policy: Policy = "always", *, required: bool = False, writer: Kept | None = None
    ) -> None:
        self.proxy, _ = b2bua_proxy(runner=False)
        self.proxy.media = MediaSettings(policy, required)
        self.runner = B2buaRunner(self.proxy, writer=cast(PairWriter | None, writer))
        self.asked: list[Media] = []
        self.runner.media.ask = self.asked.append  # rtpengine, as `relay_media` sets it
        self.runner.media.required = required

    def send(self, data: bytes, source: Destination, now: float) -> list[Send]:
        return through(self.proxy, self.runner, data, source, now)

    def reply(self, sdp: bytes | None, now: float) -> list[Send]:
        """rtpengine's reply to the last command asked (None: it failed)."""
        media = self.asked[-1]
        return [s for s in self.runner.media_reply(media.ticket, sdp, now) if isinstance(s, Send)]

    def call(self, now: float = 100.0) -> Request:
        """The caller's INVITE with SDP, offered and rewritten: leg B's INVITE."""
        self.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, now)
        [out] = requests(self.reply(RELAYED, now), GW2)
        return out

    def answered(self, out: Request, now: float = 100.2) -> Response:
        """Leg B's 200 with SDP, answered by rtpengine: the 200 the caller gets."""
        assert not to(self.send(with_sdp(answer(out, 200), GW_SDP), GW2, now), CALLER)
        [ok] = [m for m in to(self.reply(GW_RELAYED, now), CALLER) if isinstance(m, Response)]
        return ok


def to(sends: list[Send], destination: Destination) -> list[Request | Response]:
    return [parse_message(s.data) for s in sends if s.destination == destination]


def requests(sends: list[Send], destination: Destination) -> list[Request]:
    return [m for m in to(sends, destination) if isinstance(m, Request)]


def in_dialog_answer(request: Request, body: bytes) -> bytes:
    """A 200 with SDP `body` to an in-dialog `request` (its To tagged already)."""
    message = parse_message(answer(request, 200).replace(b";tag=gw", b"", 1))
    message.set_body(body, "application/sdp")
    return message.to_bytes()


def caller_request(method: str, to_tag: str, cseq: int, body: bytes = b"") -> bytes:
    message = parse_message(
        (
            f"{method} sip:{EDGE}:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK{method}{cseq}\r\n"
            f"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:4420@example.com>;tag={to_tag}\r\n"
            f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@10.0.0.5:5070>\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    if body:
        message.set_body(body, "application/sdp")
    return message.to_bytes()


def gateway_request(out: Request, method: str, cseq: int, body: bytes = b"") -> bytes:
    """An in-dialog request of the gateway on leg B (`out`: leg B's INVITE)."""
    message = parse_message(
        (
            f"{method} {str(out.header('contact')).strip('<>')} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {GW2.host}:5060;branch=z9hG4bKgw{method}{cseq}\r\n"
            f"From: {out.header('to')};tag=gw\r\nTo: {out.header('from')}\r\n"
            f"Call-ID: {out.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:gw@{GW2.host}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    if body:
        message.set_body(body, "application/sdp")
    return message.to_bytes()


def test_the_callers_offer_is_rtpengines_before_leg_b_leaves_and_so_is_the_answer() -> None:
    pair = RelayedPair()
    held = pair.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100.0)
    assert not requests(held, GW2)  # leg B's INVITE waits for the offer
    [offer] = pair.asked
    assert (offer.command, offer.call_id, offer.from_tag, offer.to_tag) == (
        "offer", "call-1", "a1", None
    )  # fmt: skip # reason: one tuple compared
    assert offer.sdp == SDP
    [out] = requests(pair.reply(RELAYED, 100.0), GW2)
    assert out.method == "INVITE" and out.body == RELAYED and out.call_id != "call-1"
    again = [s for s in pair.runner.expire(100.6) if isinstance(s, Send)]  # Timer A
    assert [m.body for m in requests(again, GW2)] == [RELAYED] and len(pair.asked) == 1
    ok = pair.answered(out)
    answer_ = pair.asked[-1]
    assert (answer_.command, answer_.call_id, answer_.from_tag, answer_.to_tag) == (
        "answer", "call-1", "a1", "gw"
    )  # fmt: skip # reason: one tuple compared
    assert answer_.sdp == GW_SDP and ok.body == GW_RELAYED


def test_re_invites_both_ways_are_offered_with_their_authors_tag_first() -> None:
    pair = RelayedPair()
    out = pair.call()
    ok = pair.answered(out)
    assert ok.to_tag is not None
    pair.send(caller_request("ACK", ok.to_tag, 1), CALLER, 100.3)
    offer_a = sdp("10.0.0.5", 4100, 3)
    pair.send(caller_request("INVITE", ok.to_tag, 2, offer_a), CALLER, 101.0)
    asked = pair.asked[-1]
    assert (asked.command, asked.from_tag, asked.to_tag, asked.sdp) == (
        "offer",
        "a1",
        "gw",
        offer_a,
    )
    [reinvite] = requests(pair.reply(RELAYED, 101.0), GW2)
    assert reinvite.body == RELAYED
    pair.send(in_dialog_answer(reinvite, GW_SDP), GW2, 101.1)
    asked = pair.asked[-1]
    assert (asked.command, asked.from_tag, asked.to_tag) == ("answer", "a1", "gw")
    assert [m.body for m in to(pair.reply(GW_RELAYED, 101.1), CALLER)] == [GW_RELAYED]
    pair.send(caller_request("ACK", ok.to_tag, 2), CALLER, 101.2)
    offer_b = sdp("203.0.113.1", 5100, 4)
    pair.send(gateway_request(out, "INVITE", 1, offer_b), GW2, 102.0)
    asked = pair.asked[-1]
    assert (asked.command, asked.from_tag, asked.to_tag, asked.sdp) == (
        "offer",
        "gw",
        "a1",
        offer_b,
    )
    [to_caller] = requests(pair.reply(GW_RELAYED, 102.0), CALLER)
    assert to_caller.method == "INVITE" and to_caller.body == GW_RELAYED
    pair.send(in_dialog_answer(to_caller, sdp("10.0.0.5", 4200, 5)), CALLER, 102.1)
    asked = pair.asked[-1]
    assert (asked.command, asked.from_tag, asked.to_tag) == ("answer", "gw", "a1")
    [ok_b] = [m for m in to(pair.reply(RELAYED, 102.1), GW2) if isinstance(m, Response)]
    assert ok_b.status == 200 and ok_b.body == RELAYED


def test_a_bye_from_either_side_deletes_the_session_once() -> None:
    for side in ("caller", "gateway"):
        pair = RelayedPair()
        out = pair.call()
        ok = pair.answered(out)
        assert ok.to_tag is not None
        if side == "caller":
            pair.send(caller_request("BYE", ok.to_tag, 2), CALLER, 103.0)
        else:
            pair.send(gateway_request(out, "BYE", 1), GW2, 103.0)
        deletes = [m for m in pair.asked if m.command == "delete"]
        assert [(m.call_id, m.ticket) for m in deletes] == [("call-1", 0)], side
        assert not pair.runner.media.sessions


def test_a_refused_call_and_a_hang_up_delete_the_session() -> None:
    pair = RelayedPair()
    out = pair.call()
    pair.send(answer(out, 486), GW2, 100.2)
    assert [m.command for m in pair.asked] == ["offer", "delete"]
    pair = RelayedPair()
    out = pair.call()
    pair.answered(out)
    pair.runner.engine.hang_up(next(iter(pair.runner.engine.pairs)), 104.0)
    pair.runner.expire(104.0)
    assert [m.command for m in pair.asked] == ["offer", "answer", "delete"]


def test_rtpengine_failing_refuses_503_when_required_and_else_the_call_goes_unrelayed() -> None:
    pair = RelayedPair(required=True)
    pair.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100.0)
    refused = pair.reply(None, 100.0)
    assert not requests(refused, GW2)
    [unavailable] = [m for m in to(refused, CALLER) if isinstance(m, Response)]
    assert unavailable.status == 503
    assert unavailable.header("retry-after") == "30"  # as the proxy's (MediaSettings)
    again = RelayedPair(required=True)
    again.runner.media.retry_after = 7  # CALLMESH_OVERLOAD_RETRY_AFTER, as `relay_media` sets
    again.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100.0)
    [seven] = [m for m in to(again.reply(None, 100.0), CALLER) if isinstance(m, Response)]
    assert seven.header("retry-after") == "7"
    pair = RelayedPair()
    pair.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100.0)
    [out] = requests(pair.reply(None, 100.0), GW2)
    assert out.body == SDP
    passed = pair.send(with_sdp(answer(out, 200), GW_SDP), GW2, 100.2)
    assert [m.body for m in to(passed, CALLER) if isinstance(m, Response)][-1] == GW_SDP
    assert [m.command for m in pair.asked] == ["offer"]  # nothing more, no delete


def test_a_mid_call_answer_rtpengine_cannot_give_crosses_as_it_came() -> None:
    pair = RelayedPair()
    out = pair.call()
    sent = pair.send(with_sdp(answer(out, 200), GW_SDP), GW2, 100.2)
    assert not to(sent, CALLER)
    [ok] = [m for m in to(pair.reply(None, 100.2), CALLER) if isinstance(m, Response)]
    assert ok.body == GW_SDP


def test_a_pair_the_policy_does_not_relay_asks_nothing() -> None:
    pair = RelayedPair("never")
    [out] = requests(pair.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100.0), GW2)
    assert out.body == SDP
    pair.send(with_sdp(answer(out, 200), GW_SDP), GW2, 100.2)
    assert pair.asked == []


def test_a_transfer_keeps_the_calls_media_in_rtpengine_until_the_end() -> None:
    """Leg C's INVITE (no SDP: C offers in its 2xx) leaves as it is; C's offer is rtpengine's
    (from C's tag to the caller's) before the re-INVITE carries it to the caller, the caller's
    answer before C's ACK carries it; the session is deleted when the call ends, not before."""
    pair = RelayedPair()
    out = pair.call()
    ok = pair.answered(out)
    assert ok.to_tag is not None
    pair.send(caller_request("ACK", ok.to_tag, 1), CALLER, 100.3)
    [pair_id] = pair.runner.engine.pairs
    agent = Destination("udp", "203.0.113.7", 5060)
    refused, sends = pair.runner.engine.start_transfer(
        pair_id, "sip:agent@203.0.113.7", agent, 105.0
    )
    assert refused is None
    leg = pair.runner.engine.transfers[pair_id].leg.call_id
    pair.runner.calls[leg] = pair_id  # as `B2buaRunner.transfer` claims it
    out_c = [s for s in pair.runner.media.outgoing(list(sends)) if isinstance(s, Send)]
    [invite_c] = requests(out_c, agent)
    assert invite_c.call_id == leg and invite_c.body == b""
    assert [m.command for m in pair.asked] == ["offer", "answer"]
    offer_c, relayed_c = sdp("203.0.113.7", 7000, 1), sdp("192.0.2.99", 30004, 3)
    ok_c = with_sdp(answer(invite_c, 200).replace(b";tag=gw", b";tag=agent"), offer_c)
    assert not to(pair.send(ok_c, agent, 105.1), CALLER)  # the re-INVITE waits for rtpengine
    asked = pair.asked[-1]
    assert (asked.command, asked.call_id, asked.from_tag, asked.to_tag, asked.sdp) == (
        "offer", "call-1", "agent", "a1", offer_c
    )  # fmt: skip # reason: one tuple compared
    [reinvite] = requests(pair.reply(relayed_c, 105.1), CALLER)
    assert reinvite.method == "INVITE" and reinvite.body == relayed_c
    answer_a, relayed_a = sdp("10.0.0.5", 4300, 6), sdp("192.0.2.99", 30006, 6)
    sent = pair.send(in_dialog_answer(reinvite, answer_a), CALLER, 105.2)
    assert [m.method for m in requests(sent, CALLER)] == ["ACK"]
    assert not to(sent, agent) and not to(sent, GW2)  # C's ACK waits, B's BYE behind it
    asked = pair.asked[-1]
    assert (asked.command, asked.from_tag, asked.to_tag, asked.sdp) == (
        "answer", "agent", "a1", answer_a
    )  # fmt: skip # reason: one tuple compared
    released = pair.reply(relayed_a, 105.2)
    [ack_c] = requests(released, agent)
    assert ack_c.method == "ACK" and ack_c.body == relayed_a
    assert [m.method for m in requests(released, GW2)] == ["BYE"]
    assert [m.command for m in pair.asked] == ["offer", "answer", "offer", "answer"]
    pair.send(caller_request("BYE", ok.to_tag, 2), CALLER, 110.0)
    assert [(m.command, m.call_id) for m in pair.asked[4:]] == [("delete", "call-1")]
    assert not pair.runner.media.sessions


def test_a_relayed_pairs_record_says_so_and_an_unrelayed_ones_does_not() -> None:
    cases: list[tuple[Policy, str | None]] = [("always", "relay"), ("never", None)]
    for policy, media in cases:
        kept = Kept()
        pair = RelayedPair(policy, writer=kept)
        ok: Request | Response
        if policy == "always":
            ok = pair.answered(pair.call())
        else:
            [out] = requests(pair.send(with_sdp(bare_invite(f"sip:4420@{EDGE}")), CALLER, 100), GW2)
            ok = next(m for m in to(pair.send(answer(out, 200), GW2, 100.2), CALLER))
        assert isinstance(ok, Response) and ok.to_tag is not None
        pair.send(caller_request("ACK", ok.to_tag, 1), CALLER, 100.3)
        record = kept.records["call-1", ok.to_tag]
        assert record.get("media") == media, policy


async def test_an_adopted_relayed_pair_relays_its_sdp_and_deletes_its_session() -> None:
    """Another edge adopts the pair (its holder gone): the record says relayed, so the
    caller's re-INVITE is rtpengine's offer there and the hang-up deletes the session; a
    record written before the flag (none) adopts the pair unrelayed, as before."""
    for flag in (True, False):
        kept = Kept()
        holder = RelayedPair(writer=kept)
        ok = holder.answered(holder.call())
        assert ok.to_tag is not None
        holder.send(caller_request("ACK", ok.to_tag, 1), CALLER, 100.3)
        if not flag:
            for record in kept.records.values():
                del record["media"]
        other = RelayedPair(writer=kept)
        delivered: list[Send | Publish] = []
        reinvite = caller_request("INVITE", ok.to_tag, 2, sdp("10.0.0.5", 4100, 3))
        other.runner.adopt(HandOff(reinvite, CALLER, adopt=True), delivered.extend)
        for _ in range(100):
            if other.runner.calls:
                break
            await asyncio.sleep(0.01)
        if flag:
            asked = other.asked[-1]
            assert (asked.command, asked.call_id, asked.from_tag, asked.to_tag) == (
                "offer", "call-1", "a1", "gw"
            )  # fmt: skip # reason: one tuple compared
            assert not requests([s for s in delivered if isinstance(s, Send)], GW2)  # held
            [out] = requests(other.reply(RELAYED, 110.0), GW2)
            assert out.body == RELAYED
        else:
            assert other.asked == []
            [out] = requests([s for s in delivered if isinstance(s, Send)], GW2)
            assert out.body == sdp("10.0.0.5", 4100, 3)
        assert await other.runner.hang_up("call-1", ok.to_tag, delivered.extend)
        deletes = [(m.command, m.call_id) for m in other.asked if m.command == "delete"]
        assert deletes == ([("delete", "call-1")] if flag else []), flag
        assert not other.runner.media.sessions
