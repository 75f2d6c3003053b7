"""The B2BUA benchmark, a tiny run on the wire: two real edges (one routing its rules as a
proxy, one as a B2BUA), SIPp; not a speed test: it proves both set-ups' calls complete, the
table has a row per rate and set-up, the live calls' pairs are found in Redis and gone once
they ended, and the figures page gets the table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wire, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_prints_a_row_per_rate_and_set_up_and_the_redis_bytes(tmp_path: Path) -> None:
    page = tmp_path / "latest.md"
    extra = ["--rate", "20,30", "--calls", "15", "--repeat", "2", "--live", "4"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "b2bua", "--figures", str(page), "--", *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    output = completed.stdout
    rows = [
        line.split() for line in output.splitlines() if re.match(r"\s*\d+ (proxy|b2bua) ", line)
    ]
    assert [(row[0], row[1]) for row in rows] == [
        ("20", "proxy"), ("20", "b2bua"), ("30", "proxy"), ("30", "b2bua"),
    ]  # fmt: skip # one pair a line
    for row in rows:
        _cpu, kernel, _idle, failed, ratio, lowest, highest = map(float, row[2:])
        assert kernel >= 0 and failed == 0.0  # CPU net of idle: any sign in so few calls
        assert lowest <= ratio <= highest
        if row[1] == "proxy":
            assert (ratio, lowest, highest) == (1.0, 1.0, 1.0)
    redis = re.search(
        r"Redis per live B2BUA call: 4 calls held \(0 not ended well\), 4 pairs, 12 keys; "
        r"MEMORY USAGE ([\d,]+) B per call; keys left after the calls ended: 0\n",
        output,
    )
    assert redis, output
    assert 200 < int(redis[1].replace(",", "")) < 4000  # the wire test's 1,192 B, give or take
    assert "`python -m bench b2bua -- --rate 20,30" in page.read_text()
    assert "4 pairs, 12 keys" in page.read_text().split("## b2bua", 1)[1]
