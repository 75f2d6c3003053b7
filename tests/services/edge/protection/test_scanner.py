"""Scanner detection: tool User-Agents and extension sweeps from one source."""

from __future__ import annotations

import pytest

from services.edge.protection import ScannerDetector, ScannerSettings, ScanVerdict


@pytest.mark.parametrize(
    "agent",
    ["friendly-scanner", "sipvicious 0.3.4", "sipcli/v1.8", "VaxSIPUserAgent/3.1", "sundayddr"],
)
def test_known_scanner_agents_are_dropped_and_the_source_stays_flagged(agent: str) -> None:
    detector = ScannerDetector(ScannerSettings())
    assert detector.check("192.0.2.66", "OPTIONS", agent, None, 0.0) == ScanVerdict.DROP
    # later requests without the tell-tale agent are dropped too
    assert detector.check("192.0.2.66", "INVITE", "Zoiper", "100", 10.0) == ScanVerdict.DROP
    assert detector.check("192.0.2.66", "INVITE", "Zoiper", "100", 3601.0) == ScanVerdict.PASS


@pytest.mark.parametrize("agent", ["Asterisk PBX 18.1", "Zoiper rv2.10", "Linphone/5.0", None])
def test_ordinary_agents_pass(agent: str | None) -> None:
    detector = ScannerDetector(ScannerSettings())
    assert detector.check("192.0.2.1", "INVITE", agent, "14075551234", 0.0) == ScanVerdict.PASS


def test_answer_action_for_operators_who_want_a_reply() -> None:
    detector = ScannerDetector(ScannerSettings(action="answer"))
    verdict = detector.check("192.0.2.66", "REGISTER", "friendly-scanner", "100", 0.0)
    assert verdict == ScanVerdict.ANSWER


def test_extension_sweep_is_detected_at_the_threshold() -> None:
    detector = ScannerDetector(ScannerSettings(sweep_targets=10, sweep_window=60.0))
    verdicts = [
        detector.check("192.0.2.77", "REGISTER", "Zoiper", str(100 + i), i * 0.5) for i in range(12)
    ]
    assert verdicts[:10] == [ScanVerdict.PASS] * 10
    assert verdicts[10] == ScanVerdict.DROP
    assert detector.is_flagged("192.0.2.77", 20.0)


def test_many_calls_to_few_numbers_are_not_a_sweep() -> None:
    detector = ScannerDetector(ScannerSettings(sweep_targets=10))
    for i in range(500):
        assert detector.check("192.0.2.8", "INVITE", None, str(i % 5), i * 0.1) == ScanVerdict.PASS


def test_sweep_window_restarts() -> None:
    detector = ScannerDetector(ScannerSettings(sweep_targets=10, sweep_window=60.0))
    for i in range(10):
        detector.check("192.0.2.9", "OPTIONS", None, str(i), i * 10.0)  # 10 targets in 90 s
    assert detector.check("192.0.2.9", "OPTIONS", None, "x", 95.0) == ScanVerdict.PASS


def test_sweep_counters_are_bounded() -> None:
    detector = ScannerDetector(ScannerSettings(max_sources=100))
    for i in range(5000):
        detector.check(f"10.0.{i >> 8 & 255}.{i & 255}", "OPTIONS", None, "100", 0.0)
    assert len(detector._sweeps) <= 100
