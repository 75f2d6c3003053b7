"""One failure report per target and interval; the held-back ones merged into a count."""

from __future__ import annotations

from services.edge.policy.failure_reports import FailureReports
from shared.contracts.edge import DestinationFailed, GatewayFailed


def failed(gateway: str, call_id: str) -> GatewayFailed:
    return GatewayFailed(
        gateway_id=gateway,
        address=f"sip:{gateway}.example.net",
        reason="timeout",
        status=408,
        method="INVITE",
        call_id=call_id,
    )


def test_the_first_failure_of_a_target_is_reported_at_once() -> None:
    reports = FailureReports(interval=1.0)
    assert reports.offer(failed("1", "c1"), now=0.0) == failed("1", "c1")
    assert reports.offer(failed("2", "c2"), now=0.1) == failed("2", "c2")  # another target


def test_failures_within_the_interval_are_held_and_flushed_as_one_with_the_count() -> None:
    reports = FailureReports(interval=1.0)
    reports.offer(failed("1", "c1"), now=0.0)
    assert [reports.offer(failed("1", f"c{n}"), now=0.1 * n) for n in (2, 3, 4)] == [None] * 3
    assert reports.flush(now=0.9) == []
    [merged] = reports.flush(now=1.0)
    assert (merged.call_id, merged.merged) == ("c4", 2)  # stands for c2, c3 and c4
    assert reports.flush(now=5.0) == []
    assert reports.offer(failed("1", "c5"), now=5.0) == failed("1", "c5")


def test_a_window_over_but_not_flushed_passes_its_count_to_the_next_report() -> None:
    reports = FailureReports(interval=1.0)
    reports.offer(failed("1", "c1"), now=0.0)
    reports.offer(failed("1", "c2"), now=0.5)
    reported = reports.offer(failed("1", "c3"), now=1.5)
    assert reported is not None and (reported.call_id, reported.merged) == ("c3", 1)


def test_gateways_and_destinations_at_one_address_are_separate_targets() -> None:
    reports = FailureReports(interval=1.0)
    gateway = failed("1", "c1")
    destination = DestinationFailed(
        set_id="s",
        address=gateway.address,
        reason="timeout",
        status=408,
        method="INVITE",
        call_id="c2",
    )
    assert reports.offer(gateway, now=0.0) is gateway
    assert reports.offer(destination, now=0.0) is destination
