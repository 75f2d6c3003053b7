"""The outage read from the probes: from the failure until the address answers for good."""

from __future__ import annotations

import pytest

from deploy.vip.probe import outage


def probes(*rows: tuple[float, float | None]) -> list[list[float | None]]:
    return [[sent, answered] for sent, answered in rows]


def test_the_outage_ends_with_the_first_answered_probe_after_the_last_lost_one() -> None:
    sent = probes((0.9, 0.91), (1.0, None), (1.1, None), (1.2, 1.21), (1.3, None), (1.4, 1.41))
    assert outage(sent, failed_at=1.0) == pytest.approx(0.4)


def test_probes_lost_before_the_failure_and_answers_sent_just_after_it_do_not_count() -> None:
    sent = probes((0.5, None), (1.05, 1.06), (1.1, None), (2.8, 2.81), (2.9, 2.91))
    assert outage(sent, failed_at=1.0) == pytest.approx(1.8)


def test_an_address_that_never_stopped_answering_had_no_outage() -> None:
    assert outage(probes((1.0, 1.01), (1.1, 1.11)), failed_at=1.05) == pytest.approx(0.05)


def test_an_address_that_never_answered_again_fails() -> None:
    with pytest.raises(AssertionError, match="no probe was answered"):
        outage(probes((1.0, 1.01), (1.1, None)), failed_at=1.05)
