"""Flood detection (pike semantics) driven by a passed-in clock: no sleeping."""

from __future__ import annotations

from services.edge.protection import AddressAcl, FloodDetector, FloodSettings, FloodVerdict
from shared.contracts.protection import SourceBlocked

SETTINGS = FloodSettings(limit=30, period=2.0, block_time=10.0)


def test_flooder_is_blocked_within_the_period_while_another_source_keeps_going() -> None:
    pike = FloodDetector(SETTINGS)
    verdicts = []
    for i in range(300):  # 300 requests in one second from one source: 10x the limit
        now = i / 300
        verdicts.append(pike.check("192.0.2.66", now))
        if i % 30 == 0:  # a normal caller: 10 requests in that second
            assert pike.check("192.0.2.10", now) == FloodVerdict.ALLOW
    assert verdicts[:30] == [FloodVerdict.ALLOW] * 30
    assert verdicts[30] == FloodVerdict.BLOCKED  # the 31st request within the period
    assert set(verdicts[31:]) == {FloodVerdict.DROP}
    assert verdicts.count(FloodVerdict.BLOCKED) == 1  # one event, one metric bump
    assert not pike.is_blocked("192.0.2.10", 1.0)


def test_steady_traffic_just_under_the_limit_is_never_blocked() -> None:
    pike = FloodDetector(SETTINGS)
    step = SETTINGS.period / SETTINGS.limit * 1.05
    assert all(pike.check("192.0.2.1", i * step) == FloodVerdict.ALLOW for i in range(3000))


def test_block_lasts_block_time_after_the_flood_stops_then_lifts() -> None:
    pike = FloodDetector(SETTINGS)
    for i in range(40):
        pike.check("192.0.2.66", i * 0.01)
    assert pike.is_blocked("192.0.2.66", 5.0)
    assert pike.check("192.0.2.66", 9.0) == FloodVerdict.DROP
    assert pike.check("192.0.2.66", 10.5) == FloodVerdict.ALLOW
    assert not pike.is_blocked("192.0.2.66", 10.5)


def test_a_source_that_keeps_flooding_stays_blocked() -> None:
    pike = FloodDetector(SETTINGS)
    now = 0.0
    while now < 30.0:  # 100 requests per second for 30 s
        pike.check("192.0.2.66", now)
        now += 0.01
    assert pike.is_blocked("192.0.2.66", 35.0)
    assert pike.blocked(35.0)["192.0.2.66"] > 4.0


def test_allowlisted_sources_are_never_counted() -> None:
    pike = FloodDetector(SETTINGS, allow=AddressAcl.parse("198.51.100.0/24"))
    assert all(pike.check("198.51.100.7", i * 0.001) == FloodVerdict.ALLOW for i in range(1000))
    assert pike.tracked == 0


def test_memory_is_bounded_under_a_spoofed_source_flood() -> None:
    pike = FloodDetector(FloodSettings(limit=5, period=1.0, max_sources=1000, max_blocked=100))
    for i in range(20_000):
        pike.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i * 1e-5)
    assert pike.tracked <= 1000
    # a real flooder keeps its count while spoofed sources churn around it
    verdicts = []
    for i in range(10):
        verdicts.append(pike.check("192.0.2.66", 1.0 + i * 0.01))
        for j in range(500):
            pike.check(f"172.16.{i}.{j & 255}", 1.0 + i * 0.01)
    assert FloodVerdict.BLOCKED in verdicts


def test_blocked_event_payload() -> None:
    event = SourceBlocked(
        source="192.0.2.66", rate=31.0, limit=30, period=2.0, block_time=10.0, edge="e1"
    )
    assert event.routing_key == "edge.source.blocked"
    assert SourceBlocked.model_validate_json(event.model_dump_json()) == event


def test_a_burst_across_the_period_edge_is_caught_by_the_sliding_window() -> None:
    """Window [0, 2) holds 26; at 2.1 s it still weighs 26 * (1 - 0.1 / 2) ≈ 24.7, so a burst
    of six straddling the edge is over the limit though no one period holds more than 30."""
    pike = FloodDetector(SETTINGS)
    assert {pike.check("192.0.2.5", i * 0.01) for i in range(26)} == {FloodVerdict.ALLOW}
    verdicts = [pike.check("192.0.2.5", 2.1 + i * 0.001) for i in range(10)]
    # 24.65 + 5 = 29.65 is under the limit; 24.64 + 6 = 30.64 is over it.
    assert verdicts[:6] == [FloodVerdict.ALLOW] * 5 + [FloodVerdict.BLOCKED]
    assert pike.rate("192.0.2.5", 2.1) > 26 * 0.9


def test_a_period_two_back_no_longer_counts() -> None:
    def burst(start: float) -> list[FloodVerdict]:
        pike = FloodDetector(SETTINGS)
        for i in range(30):
            assert pike.check("192.0.2.5", i * 0.01) == FloodVerdict.ALLOW
        return [pike.check("192.0.2.5", start + i * 0.001) for i in range(30)]

    assert FloodVerdict.BLOCKED in burst(2.0)  # the control: the period just before still weighs
    assert set(burst(4.0)) == {FloodVerdict.ALLOW}  # two periods on, it is forgotten
