"""The accounting benchmark runs end to end on a few calls and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_a_small_run_reports_every_figure() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.accounting",
            "--calls",
            "20",
            "--live-calls",
            "5",
            "--rate",
            "20",
            "--records",
            "300",
            "--runs",
            "1",
            "--batch",
            "1,8",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout)
    for batch in (1, 8):
        alone = figures[f"batch_{batch}"]
        assert alone["throughput"]["events"] == 140
        assert alone["throughput"]["batch"] == batch
        assert alone["throughput"]["cpu_ms_per_call"] > 0
        assert alone["lag_ms"]["calls"] == 5
        assert 0 < alone["lag_ms"]["placed_per_s"] <= 25  # paced at the 20 calls/s asked
        assert alone["bytes_per_record"] > 0
    runs = [(run["batch"], run["throughput"]["calls"]) for run in figures["each_run"]]
    assert runs == [(1, 20), (8, 20)]
    assert figures["csv_export"]["rows"] == 300
