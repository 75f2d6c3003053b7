"""The rtpengine benchmark runs on a few calls against the real daemon and prints every figure."""

from __future__ import annotations

import pytest

from tests.bench.runs import printed_by


@pytest.mark.integration
def test_a_small_run_prints_every_figure_and_leaves_no_session() -> None:
    printed = printed_by("bench.rtpengine", "--calls", "20", "--concurrency", "4", timeout=60)
    rows = dict(line.rsplit(None, 1) for line in printed.splitlines()[2:])
    assert float(rows["sessions left"]) == 0
    for command in ("offer", "answer", "delete"):
        assert 0 < float(rows[f"{command} median ms"]) <= float(rows[f"{command} p99 ms"])
    assert float(rows["client CPU µs/call"]) > 0
