"""The drill's table and its section of docs/high-availability.md."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from deploy.drill import report
from deploy.drill.load import Outcome
from deploy.drill.measure import Plan, StepResult
from deploy.drill.run import BROKE


def ran(lost_records: int | None = 0, never: bool = False) -> StepResult:
    calls = Outcome(
        placed={"a": 10.0, "b": 10.5, "c": 11.0},
        succeeded={} if never else {"a": 10.1, "c": 11.2},
        ended={} if never else {"a": 12.0},
    )
    registrations = Outcome(placed={"u1": 10.0}, succeeded={"u1": 10.3})
    routes = Outcome(placed={"g1": 10.0, "g2": 11.0}, succeeded={"g1": 10.2})
    return StepResult(
        "the registrar service", "", calls, registrations, routes, kill_at=10.4,
        lost_records=lost_records,
    )  # fmt: skip # the figures in a row


def test_a_row_counts_failures_drops_recovery_and_losses() -> None:
    assert report.row(ran()) == [
        "the registrar service", "3", "1", "1", "0.80 s", "0 of 1", "**never**", "1 of 2", "none",
        "none",
    ]  # fmt: skip # the table's row
    assert report.row(ran(lost_records=2))[-2] == "0 / 0 / 2"
    assert report.row(ran(never=True))[4] == "**never**"


def test_a_step_without_call_records_says_so_and_counts_the_rest() -> None:
    result = ran(lost_records=None)
    assert report.row(result)[-2] == "none (no call records here)"
    result.lost_bindings = 1
    assert report.row(result)[-2] == "0 / 1 / not kept"


def test_what_the_gateway_did_not_expect_and_a_hung_load_are_shown() -> None:
    result = ran()
    result.unexpected.update({"INVITE": 3, "BYE after its call ended": 12})
    result.overran.append("the calls' SIPp outlived its -timeout (83 s): stopped")
    cells = report.row(result)
    assert cells[-1] == "12 BYE after its call ended, 3 INVITE"
    assert cells[0] == (
        "the registrar service — **the calls' SIPp outlived its -timeout (83 s): stopped**"
    )


def test_a_step_not_run_says_why() -> None:
    cells = report.row(StepResult("a whole data centre", "the lab is not wired"))
    assert cells[:2] == ["a whole data centre", "not run: the lab is not wired"]
    assert len(cells) == len(report.COLUMNS)


def test_the_section_replaces_its_previous_self_and_keeps_the_rest(tmp_path: Path) -> None:
    page = tmp_path / "ha.md"
    page.write_text("# HA\n\n## Before\n\ntext\n")
    started = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    first = report.section([ran()], Plan(), "python -m deploy.drill", started, "a machine")
    report.write(page, first)
    assert page.read_text() == "# HA\n\n## Before\n\ntext\n\n" + first
    page.write_text(page.read_text() + "\n## After\n\nkept\n")
    second = report.section([ran(lost_records=1)], Plan(), "again", started, "a machine")
    report.write(page, second)
    text = page.read_text()
    assert text.count(report.HEADING) == 1 and "0 / 0 / 1" in text and "again" in text
    assert text.startswith("# HA\n\n## Before\n\ntext\n\n") and text.endswith("## After\n\nkept\n")


def test_a_step_that_broke_is_a_row_of_its_own_that_says_so() -> None:
    cells = report.row(StepResult("the Redis primary", f"{BROKE}: RuntimeError: no primary"))
    assert cells[1] == f"**{BROKE}: RuntimeError: no primary**"


def test_a_run_alarms_on_a_loss_a_hung_load_a_broken_step_or_work_never_back() -> None:
    def quiet() -> StepResult:  # every kind of work back after the kill, nothing lost
        result = ran()
        assert result.registrations is not None
        result.registrations.placed["u2"] = 10.5
        result.registrations.succeeded["u2"] = 10.6
        return result

    assert not report.alarming(quiet())
    assert report.alarming(ran(never=True))  # "**never**" in a cell: no work came back
    lost = quiet()
    lost.lost_routes = 1
    assert report.alarming(lost)
    hung = quiet()
    hung.overran.append("the calls' SIPp outlived its -timeout")
    assert report.alarming(hung)
    assert report.alarming(StepResult("x", f"{BROKE}: E"))
    assert not report.alarming(StepResult("x", "needs root"))
