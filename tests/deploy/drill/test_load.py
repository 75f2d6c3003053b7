"""What the drill reads from its load: SIPp's action logs, and when work resumed after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.drill.load import Outcome, outcome, read_log


def test_a_sipp_action_log_gives_each_call_its_placing_answer_and_bye(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    log.write_text(
        "placed 1-7@127.0.0.1 2026-12-03\t12:17:58.762287\t100.5\n"
        "placed 2-7@127.0.0.1 2026-12-03\t12:17:58.862287\t100.6\n"
        "up 1-7@127.0.0.1 2026-12-03\t12:17:58.962287\t100.7\n"
        "ended 1-7@127.0.0.1 2026-12-03\t12:18:00.962287\t102.7\n"
        "a line SIPp wrote itself\n"
    )
    seen = outcome(log, "up")
    assert seen.placed == {"1-7@127.0.0.1": 100.5, "2-7@127.0.0.1": 100.6}
    assert seen.succeeded == {"1-7@127.0.0.1": 100.7}
    assert seen.ended == {"1-7@127.0.0.1": 102.7}
    assert seen.failed == ["2-7@127.0.0.1"]
    assert read_log(tmp_path / "none.log") == {}


def test_recovery_is_the_first_success_of_work_placed_after_the_kill_and_the_last_failure() -> None:
    seen = Outcome(
        placed={"before": 9.0, "held": 10.1, "lost": 10.2, "late": 10.3, "next": 11.0},
        succeeded={"before": 9.1, "held": 12.0, "late": 12.5, "next": 11.4},
    )
    # "lost" failed: only what was placed after it counts; the earliest answer among those
    assert seen.recovered_after(kill_at=10.0) == pytest.approx(1.4)
    # nothing failed after a kill at 10.25: the first answer of work placed since
    assert seen.recovered_after(kill_at=10.25) == pytest.approx(1.15)
    assert Outcome(placed={"a": 1.0}).recovered_after(kill_at=0.5) is None
