"""The outbox benchmark runs on a few calls and prints both rows and their ratio."""

from __future__ import annotations

from tests.bench.runs import printed_by


def test_a_small_run_prints_the_journal_off_and_on() -> None:
    printed = printed_by("bench.outbox", "--calls", "200", "--repeats", "1", timeout=120)
    rows = {
        cells[0]: cells[1:]
        for line in printed.splitlines()[3:]
        if (cells := [cell.strip() for cell in line.strip().strip("|").split("|")])
    }
    assert set(rows) == {"off", "on", "on / off"}
    assert float(rows["on"][0]) > 0 and float(rows["off"][1]) > 0
    assert 100 < float(rows["on"][2]) < 1000  # bytes of a journal line
