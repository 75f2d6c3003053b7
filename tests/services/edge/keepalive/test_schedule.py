"""The keepalive schedule: who is pinged, when, spread over the interval, and when given up."""

from __future__ import annotations

import pytest

from services.edge.keepalive.schedule import (
    KeepaliveSchedule,
    Ping,
    needs_keepalive,
    phase_of,
    ping_of,
)
from shared.registrar.model import Location

EDGE = "edge-a"


def location(
    n: int = 0,
    *,
    contact: str | None = None,
    received: str = "sip:203.0.113.9:40000",
    transport: str = "udp",
    edge: str = EDGE,
    params: str = "",
) -> Location:
    return Location(
        aor=f"sip:user{n}@example.com",
        contact=contact or f"sip:user{n}@192.168.1.{n % 250 + 1}:5060",
        expires_at=1e12,
        received=received,
        transport=transport,
        edge=edge,
        params=params,
    )


def test_only_the_edge_holding_the_flow_pings() -> None:
    assert needs_keepalive(location(), EDGE)
    assert not needs_keepalive(location(), "edge-b")


@pytest.mark.parametrize(
    ("contact", "received", "transport", "expected"),
    [
        ("sip:a@192.168.1.5:5060", "sip:203.0.113.9:40000", "udp", True),  # private contact
        ("sip:a@198.51.100.7:5060", "sip:203.0.113.9:5060", "udp", True),  # another host
        ("sip:a@198.51.100.7:5062", "sip:198.51.100.7:5060", "udp", True),  # another port
        ("sip:a@198.51.100.7", "sip:198.51.100.7:5060", "udp", False),  # reached as it says
        ("sip:a@198.51.100.7:5060", "sip:198.51.100.7:5060", "udp", False),
        ("sip:a@198.51.100.7:5060", "sip:198.51.100.7:5060;transport=tcp", "tcp", True),
    ],
)
def test_nat_or_connection_needs_keepalives(
    contact: str, received: str, transport: str, expected: bool
) -> None:
    found = location(contact=contact, received=received, transport=transport)
    assert needs_keepalive(found, EDGE) is expected


def test_crlf_only_on_an_outbound_connection() -> None:
    assert ping_of(location()) is Ping.OPTIONS
    assert ping_of(location(params=";reg-id=1")) is Ping.OPTIONS  # UDP: RFC 5626 uses STUN
    assert ping_of(location(transport="tcp")) is Ping.OPTIONS
    assert ping_of(location(transport="tcp", params=';+sip.instance="<urn:x>";reg-id=1')) is (
        Ping.CRLF
    )


def test_each_binding_is_pinged_once_per_interval_at_its_phase() -> None:
    schedule = KeepaliveSchedule(interval=30.0, timeout=90.0)
    found = location()
    schedule.watch(found, now=1000.0)
    first = schedule.next_due()
    assert first is not None and 1000.0 <= first < 1030.0
    assert first % 30.0 == pytest.approx(phase_of((found.aor, found.contact), 30.0))
    assert schedule.tick(first - 0.001).pings == []
    assert [w.location for w in schedule.tick(first).pings] == [found]
    assert schedule.tick(first + 29.9).pings == []
    schedule.answered(found.aor, found.contact)
    assert len(schedule.tick(first + 30.0).pings) == 1


def test_pings_are_spread_over_the_interval() -> None:
    schedule = KeepaliveSchedule(interval=30.0, timeout=90.0)
    for n in range(3000):
        schedule.watch(location(n), now=0.0)
    per_second = [len(schedule.tick(float(second)).pings) for second in range(1, 31)]
    assert sum(per_second) == 3000
    assert max(per_second) < 3 * 3000 / 30  # no second takes more than thrice its share


def test_silent_binding_is_reported_once_after_the_timeout() -> None:
    schedule = KeepaliveSchedule(interval=10.0, timeout=25.0)
    found = location()
    schedule.watch(found, now=0.0)
    sent_at, unreachable = [], []
    for second in range(0, 100):
        tick = schedule.tick(float(second))
        sent_at += [second for _ in tick.pings]
        unreachable += [(second, gone) for gone in tick.unreachable]
    first = sent_at[0]
    assert sent_at == [first, first + 10, first + 20]  # silence counted from the first ping
    assert unreachable == [(first + 30, found)]
    assert len(schedule) == 0 and schedule.next_due() is None


def test_any_answer_keeps_it() -> None:
    schedule = KeepaliveSchedule(interval=10.0, timeout=25.0)
    found = location()
    schedule.watch(found, now=0.0)
    for second in range(0, 200):
        tick = schedule.tick(float(second))
        assert tick.unreachable == []
        for ping in tick.pings:
            schedule.answered(ping.location.aor, ping.location.contact)
    assert len(schedule) == 1


def test_a_refresh_counts_as_an_answer_and_forget_stops_the_pings() -> None:
    schedule = KeepaliveSchedule(interval=10.0, timeout=15.0)
    found = location()
    schedule.watch(found, now=0.0)
    for second in range(0, 60):
        assert schedule.tick(float(second)).unreachable == []
        if second % 10 == 0:
            schedule.watch(found, now=float(second))  # re-REGISTER through the mapping
    assert len(schedule) == 1
    schedule.forget(found.aor, found.contact)
    assert schedule.tick(1000.0).pings == [] and schedule.next_due() is None


def test_a_late_caller_gets_no_burst_of_catch_up_pings() -> None:
    schedule = KeepaliveSchedule(interval=10.0, timeout=1000.0)
    schedule.watch(location(), now=0.0)
    assert len(schedule.tick(500.0).pings) == 1
    due = schedule.next_due()
    assert due is not None and 500.0 < due <= 510.0


def test_interval_and_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        KeepaliveSchedule(interval=0, timeout=10)
