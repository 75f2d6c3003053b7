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
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout)
    assert figures["throughput"]["events"] == 140
    assert figures["throughput"]["cpu_ms_per_call"] > 0
    assert [run["throughput"]["calls"] for run in figures["each_run"]] == [20, 20]
    assert figures["lag_ms"]["calls"] == 5
    assert figures["bytes_per_record"] > 0
    assert figures["csv_export"]["rows"] == 300
