"""The figures page ``make bench`` writes (bench/figures.py), from fake runs: no benchmark runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench import figures
from shared import extensions

ORDER = ["sip_parse", "routing", "proxy"]
WHEN = datetime(2026, 12, 2, 21, 30, tzinfo=UTC)


def fake(name: str, output: str) -> figures.Run:
    return figures.Run(name, f"python -m bench {name}", WHEN, 12.4, output)


def test_a_run_becomes_a_section_with_date_machine_command_and_figures(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks" / "latest.md"
    figures.update(page, [fake("routing", "lookup  1.02 µs\n")], "2 cores (CPU)", ORDER)
    text = page.read_text()
    assert text.startswith(figures.HEADER)
    assert text.endswith(
        "## routing\n\n"
        "| date | machine | command | time |\n"
        "| --- | --- | --- | --- |\n"
        "| 2026-12-02 21:30 UTC | 2 cores (CPU) | `python -m bench routing` | 12 s |\n\n"
        "```text\nlookup  1.02 µs\n```\n"
    )


def test_a_later_run_replaces_its_own_section_and_keeps_the_others_in_order(
    tmp_path: Path,
) -> None:
    page = tmp_path / "latest.md"
    figures.update(
        page, [fake("proxy", "old proxy\n"), fake("routing", "old routing\n")], "m", ORDER
    )
    figures.update(page, [fake("sip_parse", "parse 10 µs\n")], "m", ORDER)
    figures.update(page, [fake("routing", "new routing\n")], "m2", ORDER)
    text = page.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## sip_parse",
        "## routing",
        "## proxy",
    ]
    assert "old routing" not in text and "new routing" in text
    assert "old proxy" in text and "parse 10 µs" in text
    assert text.count(figures.HEADER) == 1


def test_the_machine_line_names_cpu_python_build_and_load() -> None:
    machine = figures.describe_machine()
    assert " cores (" in machine and "Python 3." in machine and "load average" in machine
    assert extensions.STATE in machine
