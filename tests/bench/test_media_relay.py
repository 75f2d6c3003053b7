"""The media relay benchmark runs a few calls each way through the core and a real rtpengine."""

from __future__ import annotations

import pytest

from tests.bench.runs import printed_by


@pytest.mark.integration
def test_a_small_run_prints_both_figures_and_leaves_no_session() -> None:
    # a failed run (a session left, a call unrelayed) raises
    printed = printed_by("bench.media_relay", "--calls", "40", "--rate", "100", timeout=120)
    rows = dict(line.rsplit(None, 1) for line in printed.splitlines()[2:])
    assert float(rows["sessions left"]) == 0
    assert float(rows["media failures"]) == 0
    assert float(rows["unrelayed CPU µs/call"]) > 0
    assert float(rows["relayed CPU µs/call"]) > 0
