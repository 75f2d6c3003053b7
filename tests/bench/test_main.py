from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_arguments_after_a_double_dash_reach_every_benchmark(tmp_path: Path) -> None:
    page = tmp_path / "latest.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "sip_parse", "--figures", str(page), "--", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage:" in completed.stdout  # the benchmark printed its help instead of running
    assert "=== sip_parse: " in completed.stdout
    # what it printed is on the figures page, with the command that printed it
    assert "`python -m bench sip_parse -- --help`" in page.read_text()
    assert "usage:" in page.read_text().split("## sip_parse", 1)[1]


def test_an_unknown_benchmark_is_refused() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "nosuch"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "unknown benchmark(s): nosuch" in completed.stdout
