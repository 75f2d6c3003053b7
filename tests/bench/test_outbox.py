"""The outbox benchmark runs on a few calls and prints both rows and their ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_prints_the_journal_off_and_on() -> None:
    printed = subprocess.check_output(  # a failed run raises, with its exit status
        [sys.executable, "-m", "bench.outbox", "--calls", "200", "--repeats", "1"],
        cwd=REPO_ROOT,
        text=True,
        timeout=120,
    )
    rows = {
        cells[0]: cells[1:]
        for line in printed.splitlines()[3:]
        if (cells := [cell.strip() for cell in line.strip().strip("|").split("|")])
    }
    assert set(rows) == {"off", "on", "on / off"}
    assert float(rows["on"][0]) > 0 and float(rows["off"][1]) > 0
    assert 100 < float(rows["on"][2]) < 1000  # bytes of a journal line
