"""A load SIPp that outlives its deadline is stopped and said so, never waited on for ever.

A documented drill run once broke on a caller SIPp that outlived its own -timeout
(``subprocess.TimeoutExpired`` took the whole step's row).  Here a real caller whose
calls nobody answers is still running at its deadline: it is stopped, its screen (the
calls at each scenario message) dumped first for the reader, and the note says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.drill.load import Entry, place_calls
from deploy.drill.measure import ended_by, stop_hung
from deploy.labs.ports import LOOPBACK, free_port

pytestmark = [pytest.mark.wire]


def test_a_load_sipp_running_past_its_deadline_is_stopped_with_its_screen_dumped(
    tmp_path: Path,
) -> None:
    nobody = Entry(LOOPBACK, free_port())
    process = place_calls(tmp_path / "calls.log", nobody, rate=5, calls=100, hold_ms=1000)
    assert not ended_by(process, time.monotonic() + 1.0)
    note = stop_hung(process, "calls", 81.0, tmp_path)
    assert process.poll() is not None
    assert note.startswith("the calls' SIPp outlived its -timeout (81 s): stopped, its screen in")
    [dump] = tmp_path.glob(f"*_{process.pid}_screen.log")
    assert dump.name in note and "INVITE" in dump.read_text(errors="replace")
    assert ended_by(process, time.monotonic())
