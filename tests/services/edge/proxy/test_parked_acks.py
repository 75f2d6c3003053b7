"""The store of stateless ACKs waiting for DNS: a ticket each, a bound on how many wait (the
rest dropped and counted), a deadline (a late answer dropped and counted, the slot of one
whose answer never came taken back when the store is full)."""

from __future__ import annotations

from services.edge import metrics
from services.edge.proxy.dialogs import OwnRoute
from services.edge.proxy.parked_acks import ParkedAck, ParkedAcks
from services.edge.proxy.routes import Hop
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination

ACK = (
    b"ACK sip:bob@carrier.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.20:5070;branch=z9hG4bKack1\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
    b"Call-ID: ack-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def parked(at: float) -> ParkedAck:
    request = parse_message(ACK)
    assert isinstance(request, Request)
    hop = Hop("sip:bob@carrier.test", Destination("udp", "carrier.test", 5060))
    return ParkedAck(request, OwnRoute(), None, hop, parked_at=at)


def dropped(reason: str) -> int:
    return metrics.ACKS_DROPPED.get(reason, 0)


def test_each_ack_gets_its_own_ticket_and_is_taken_once() -> None:
    acks = ParkedAcks()
    first, second = parked(0.0), parked(0.0)
    one, two = acks.park(first, 0.0), acks.park(second, 0.0)
    assert one is not None and two is not None and one != two
    assert acks.take(two, 1.0) is second
    assert acks.take(two, 1.0) is None
    assert acks.take(one, 1.0) is first
    assert len(acks) == 0


def test_past_the_limit_an_ack_is_dropped_and_counted() -> None:
    acks = ParkedAcks(limit=2, deadline=10.0)
    before = dropped("parked_full")
    assert acks.park(parked(0.0), 0.0) is not None
    assert acks.park(parked(0.0), 0.0) is not None
    assert acks.park(parked(0.0), 1.0) is None
    assert dropped("parked_full") == before + 1
    assert len(acks) == 2


def test_an_answer_after_the_deadline_drops_the_ack() -> None:
    acks = ParkedAcks(deadline=10.0)
    before = dropped("deadline")
    ticket = acks.park(parked(5.0), 5.0)
    assert ticket is not None
    assert acks.take(ticket, 15.5) is None
    assert dropped("deadline") == before + 1
    assert len(acks) == 0


def test_a_full_store_takes_back_the_slots_of_acks_whose_answer_never_came() -> None:
    acks = ParkedAcks(limit=2, deadline=10.0)
    stale = acks.park(parked(0.0), 0.0)
    fresh = acks.park(parked(8.0), 8.0)
    before = dropped("deadline")
    newest = acks.park(parked(12.0), 12.0)  # the first is overdue: its slot is free again
    assert newest is not None and stale is not None and fresh is not None
    assert dropped("deadline") == before + 1
    assert acks.take(stale, 12.0) is None
    assert acks.take(fresh, 12.0) is not None


def test_an_ack_answered_at_its_deadline_is_still_sent() -> None:
    acks = ParkedAcks(deadline=10.0)
    ticket = acks.park(parked(5.0), 5.0)
    assert ticket is not None
    assert acks.take(ticket, 15.0) is not None


def test_a_full_store_keeps_an_ack_exactly_at_its_deadline() -> None:
    acks = ParkedAcks(limit=1, deadline=10.0)
    waiting = acks.park(parked(0.0), 0.0)
    assert acks.park(parked(10.0), 10.0) is None  # not overdue yet: no slot freed
    assert waiting is not None and acks.take(waiting, 10.0) is not None
