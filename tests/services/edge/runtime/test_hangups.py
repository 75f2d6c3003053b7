"""A hang-up's BYEs on the edge's real loopback sockets: answered, retransmitted, unanswered,
unsendable, and the proxied traffic left alone.

A UDP "party" beside the edge answers each BYE (after dropping the first copies
it is told to); the outcome and the ``edge.call.ended`` it becomes are checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.edge.control.byes import Bye, bye
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.interfaces import Interfaces
from services.edge.runtime.hangups import NO_ANSWER, NOT_SENT, Hangups
from services.edge.runtime.publisher import EventPublisher
from services.edge.runtime.sockets import EdgeSockets
from services.edge.runtime.startup import interfaces_of
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.calls import CallEnded
from shared.contracts.event import Event
from shared.settings import ListenAddress
from shared.sip.message import Request, parse_message
from shared.sip.responses import make_response
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.services.edge.control.test_byes import CALLER


class Party(asyncio.DatagramProtocol):
    """Answers each request 100 then 200, after ignoring its first `drop` copies."""

    def __init__(self, drop: int = 0, *, silent: bool = False) -> None:
        self.drop, self.silent, self.received = drop, silent, 0
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        request = parse_message(data)
        if self.silent or self.received <= self.drop or self.transport is None:
            return
        assert isinstance(request, Request)
        for status in (100, 200):
            self.transport.sendto(make_response(request, status).to_bytes(), addr)


@dataclass
class Edge:
    hangups: Hangups
    interfaces: Interfaces
    published: list[Event]
    proxied: list[bytes]

    async def party(self, party: Party) -> Destination:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: party, ("127.0.0.1", 0))
        party.transport = transport
        return Destination("udp", "127.0.0.1", transport.get_extra_info("sockname")[1])

    def bye_to(self, destination: Destination, transport: str = "udp") -> Bye:
        leg = CALLER.model_copy(
            update={"address": f"{destination.host}:{destination.port}", "transport": transport}
        )
        return bye("caller", leg, 1, self.interfaces)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    proxied: list[bytes] = []
    hangups: Hangups | None = None

    def deliver(
        data: bytes, source: Destination, _listener: Listener, _received_at: float | None
    ) -> None:
        if hangups is None or not hangups.claims(data, source):
            proxied.append(data)  # what the proxy core would have had

    sockets = EdgeSockets(deliver)
    addresses = [ListenAddress("udp", "127.0.0.1", 0), ListenAddress("tcp", "127.0.0.1", 0)]
    await sockets.open(addresses, shared=False)
    bus = MemoryBus(MemoryBroker(), "t", "edge", "edge-a")
    await bus.start()
    publisher = EventPublisher(bus)
    published: list[Event] = []
    publisher.observer = published.append
    hangups = Hangups(sockets, publisher, CallEvents("edge-a"), t1=0.05, timeout=0.4)
    yield Edge(hangups, interfaces_of(sockets.bound, None), published, proxied)
    await publisher.stop()
    await sockets.close()
    await bus.close()


async def test_an_answered_bye_is_an_edge_ended_call(edge: Edge) -> None:
    party = Party()
    made = edge.bye_to(await edge.party(party))
    [outcome] = await edge.hangups.end("record-call", [made])
    assert (outcome.side, outcome.status) == ("caller", 200)
    [ended] = edge.published
    assert isinstance(ended, CallEnded)
    assert (ended.call_id, ended.from_tag, ended.to_tag) == ("record-call", "gw", "a1")
    assert (ended.status, ended.by_edge) == (200, True)
    assert edge.proxied == []  # the 100 and the 200 were both taken


async def test_a_lost_bye_over_udp_is_sent_again(edge: Edge) -> None:
    party = Party(drop=2)
    [outcome] = await edge.hangups.end("c", [edge.bye_to(await edge.party(party))])
    assert outcome.status == 200
    assert party.received == 3


async def test_an_unanswered_bye_is_a_408_after_the_timeout(edge: Edge) -> None:
    party = Party(silent=True)
    [outcome] = await edge.hangups.end("c", [edge.bye_to(await edge.party(party))])
    assert outcome.status == NO_ANSWER
    assert 3 <= party.received <= 5  # 0, 50, 150, 350 ms: Timer E doubling within 400 ms
    assert [e.status for e in edge.published if isinstance(e, CallEnded)] == [NO_ANSWER]


async def test_a_caller_whose_connection_closed_is_not_reached_by_a_new_one(edge: Edge) -> None:
    made = edge.bye_to(Destination("tcp", "127.0.0.1", 9), transport="tcp")
    [outcome] = await edge.hangups.end("c", [made])
    assert outcome.status == NOT_SENT
    assert "connection is closed" in outcome.reason


async def test_a_proxied_response_is_left_to_the_core(edge: Edge) -> None:
    destination = await edge.party(Party(silent=True))
    waiting = asyncio.ensure_future(edge.hangups.end("c", [edge.bye_to(destination)]))
    await asyncio.sleep(0.02)  # a hang-up is waiting: the check is on
    another = parse_message(edge.bye_to(destination).request.to_bytes())
    assert isinstance(another, Request)
    assert not edge.hangups.claims(make_response(another, 200).to_bytes(), destination)
    assert not edge.hangups.claims(b"SIP/2.0 200 OK\r\n\r\n", destination)
    await waiting
