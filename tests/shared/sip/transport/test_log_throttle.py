"""One log line per reason every ten seconds, its memory bounded whatever the reasons."""

from __future__ import annotations

from shared.sip.transport.base import MAX_THROTTLED_REASONS, REFUSAL_LOG_INTERVAL, LogThrottle


def test_a_reason_logs_once_per_interval_and_then_says_how_many_went_unlogged() -> None:
    throttle = LogThrottle()
    assert throttle.due("flood", 0.0) == 0
    assert [throttle.due("flood", 1.0), throttle.due("flood", 2.0)] == [None, None]
    assert throttle.due("other", 2.0) == 0  # another reason: its own line
    assert throttle.due("flood", REFUSAL_LOG_INTERVAL) == 2


def test_reasons_named_after_peers_never_grow_its_memory_past_the_bound() -> None:
    throttle = LogThrottle()
    for n in range(3 * MAX_THROTTLED_REASONS):
        assert throttle.due(f"send 10.0.{n // 256}.{n % 256}", 0.0) == 0
    assert len(throttle._quiet_until) <= MAX_THROTTLED_REASONS
