"""A B2BUA pair's record in the real Redis: found by either leg's dialog, expiring, deleted,
written in order by the background writer; look-ups of unknown pairs bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from services.edge.b2bua.legs import PAIR_TAG
from services.edge.proxy.actions import HandOff, Publish, Send
from services.edge.proxy.call_events import CallEvents
from services.edge.runtime.b2bua_runner import MAX_ADOPTING, B2buaRunner
from services.edge.runtime.b2bua_state import PairStates, PairWriter
from shared.contracts.calls import CallEnded
from shared.sip.message import Request, parse_message
from shared.store import Store
from tests.services.edge.b2bua.support import answer as b2b_answer
from tests.services.edge.proxy.test_core import CALLER, EDGE, GW2
from tests.services.edge.runtime.test_b2bua_events import AGENT, Call, answered, caller_ack
from tests.services.edge.runtime.test_b2bua_runner import b2bua_proxy

pytestmark = pytest.mark.integration


def record(pair_id: str = "00112233445566aa") -> dict[str, str]:
    fields = {"id": pair_id, "created": "1.0", "answered": "2.0"}
    for side in "ab":
        fields |= {
            f"{side}_call_id": f"{side}-call@example.com",
            f"{side}_local_tag": f"cmb2b{side}1",
            f"{side}_remote_tag": f"{side}9",
            f"{side}_routes": "",
        }
    return fields


async def test_a_record_is_found_by_either_legs_dialog_until_deleted(redis_store: Store) -> None:
    states = PairStates(redis_store, ttl=3600)
    await states.save(record())
    assert await states.load("a-call@example.com", "cmb2ba1") == record()
    assert await states.load("b-call@example.com", "cmb2bb1") == record()
    assert await states.load("b-call@example.com", "cmb2ba1") is None  # another leg's tag
    assert 3500 < await redis_store.redis.ttl(states.pair_key(record()["id"])) <= 3600
    await states.delete(record())
    assert await states.load("a-call@example.com", "cmb2ba1") is None
    assert await redis_store.redis.keys(f"{redis_store.namespace}:*") == []


async def test_the_writer_keeps_the_order_of_saves_and_deletes(redis_store: Store) -> None:
    writer = PairWriter(PairStates(redis_store, ttl=60))
    changed = record() | {"a_remote_tag": "a10"}
    writer.save(record())
    writer.save(changed)
    writer.delete(changed)
    writer.save(record("99887766554433bb") | {"a_call_id": "other@example.com"})
    for _ in range(100):
        if await writer.states.load("other@example.com", "cmb2ba1") is not None:
            break
        await asyncio.sleep(0.01)
    assert await writer.states.load("a-call@example.com", "cmb2ba1") is None
    assert await writer.states.load("other@example.com", "cmb2ba1") is not None
    await writer.stop()


async def test_forged_pair_tags_past_the_look_ups_in_flight_are_answered_at_once(
    redis_store: Store,
) -> None:
    """A flood of requests naming pair tags costs at most `MAX_ADOPTING` Redis look-ups at a
    time; each request, looked up or not, is answered 481 (no such pair anywhere)."""
    proxy, _ = b2bua_proxy(runner=False)
    runner = B2buaRunner(proxy, writer=PairWriter(PairStates(redis_store, ttl=60)))
    answers: list[list[Send | Publish]] = []
    for n in range(MAX_ADOPTING + 20):
        bye = (
            f"BYE sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK{n}\r\n"
            f"From: <sip:a@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag={PAIR_TAG}{n}\r\n"
            f"Call-ID: forged-{n}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        runner.adopt(HandOff(bye, CALLER, adopt=True), answers.append)
    assert len(answers) == 20  # the ones past the limit: not looked up
    for _ in range(200):
        if len(answers) == MAX_ADOPTING + 20:
            break
        await asyncio.sleep(0.01)
    sent = [send.data[:12] for sends in answers for send in sends if isinstance(send, Send)]
    assert sent == [b"SIP/2.0 481 "] * (MAX_ADOPTING + 20)
    assert runner.calls == {}
    await runner.stop()


async def test_a_hang_up_adopts_from_redis_a_pair_no_worker_here_holds(redis_store: Store) -> None:
    """The edge holding the call is gone: another edge's hang-up (`:hangup` passed to no one)
    loads the pair, sends both BYEs with the CSeqs it recorded, and deletes the state."""
    holder = Call(*b2bua_proxy())
    holder.runner = B2buaRunner(holder.proxy, writer=PairWriter(PairStates(redis_store, ttl=60)))
    out, tag = answered(holder)
    states = PairStates(redis_store, ttl=60)
    for _ in range(200):
        if await states.load("call-1", tag) is not None:
            break
        await asyncio.sleep(0.01)
    proxy, _ = b2bua_proxy(runner=False)
    proxy.call_events = CallEvents("edge-2")
    other = B2buaRunner(proxy, writer=PairWriter(states))
    delivered: list[Send | Publish] = []
    assert await other.hang_up("call-1", tag, delivered.extend) is True
    byes = {s.destination: parse_message(s.data) for s in delivered if isinstance(s, Send)}
    assert {(m.call_id, m.cseq.seq) for m in byes.values() if isinstance(m, Request)} == {
        ("call-1", 1),
        (out.call_id, out.cseq.seq + 1),
    }
    assert set(byes) == {CALLER, GW2}
    [ended] = [a.event for a in delivered if isinstance(a, Publish)]
    assert isinstance(ended, CallEnded) and ended.by_edge and ended.edge == "edge-2"
    for _ in range(200):
        if await states.load("call-1", tag) is None:
            break
        await asyncio.sleep(0.01)
    assert await states.load("call-1", tag) is None
    await other.stop()
    await holder.runner.stop()


async def until(check: Callable[[], Awaitable[bool]]) -> bool:
    for _ in range(200):
        if await check():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_transfer_moves_the_state_to_the_new_legs_dialog(redis_store: Store) -> None:
    """After a transfer the pair is found by the caller's and the new leg's dialogs, no longer
    by the old leg's (its key deleted with the record before the new one is written)."""
    holder = Call(*b2bua_proxy())
    states = PairStates(redis_store, ttl=60)
    holder.runner = B2buaRunner(holder.proxy, writer=PairWriter(states))
    out, tag = answered(holder)
    holder.feed(caller_ack(tag), CALLER, 120.0)
    old = (out.call_id, out.from_tag or "")
    assert await until(lambda: _found(states, *old))  # written before the transfer
    delivered: list[Send | Publish] = []
    why, leg = await holder.runner.transfer("call-1", tag, "sip:a@203.0.113.77", delivered.extend)
    assert why == ""
    [invite_c] = [parse_message(s.data) for s in delivered if isinstance(s, Send)]
    assert isinstance(invite_c, Request)
    ok_c = b2b_answer(invite_c, 200, tag="ag", contact="<sip:a@x>", body=b"v=0\r\n")
    [reinvite] = holder.feed(ok_c, AGENT, 150.0)
    assert isinstance(reinvite, Request)
    holder.feed(b2b_answer(reinvite, 200, contact="<sip:a@y>", body=b"v=0\r\n"), CALLER, 151.0)
    new = (leg, invite_c.from_tag or "")
    assert await until(lambda: _gone(states, *old))
    assert await until(lambda: _found(states, *new))
    record_ = await states.load("call-1", tag)
    assert record_ is not None and record_["b_call_id"] == leg
    await holder.runner.stop()


async def _gone(states: PairStates, call_id: str, tag: str) -> bool:
    return await states.load(call_id, tag) is None


async def _found(states: PairStates, call_id: str, tag: str) -> bool:
    return await states.load(call_id, tag) is not None
