"""`docs/benchmarks/latest.md`: each benchmark's figures of its last run, by `make bench`.

Figures typed by hand drift from what the code does; here every benchmark's
printed table is kept as it printed it, with when, where and how it ran (the
machine is shared and noisy, so its load is part of the record). A run of a
subset replaces only its own sections; a benchmark that failed keeps its
previous figures.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared import extensions

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "docs" / "benchmarks" / "latest.md"
HEADER = """\
# Benchmarks: the latest figures

Written by `python -m bench` (`make bench`) after each benchmark it runs: do not
edit by hand. What each benchmark measures and how to run them:
[benchmarks](../benchmarks.md).
"""


@dataclass(frozen=True)
class Run:
    """One benchmark's run: its name, command line, when, how long, and what it printed."""

    name: str
    command: str
    started: datetime
    seconds: float
    output: str


def describe_machine() -> str:
    """CPU model and count, memory, OS, Python, the build, and the load when the run began."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            f"{int(line.split()[1]) / 1024**2:.1f} GiB"
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        "unknown memory",
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {extensions.STATE}, "
        f"load average {load}"
    )


def render(run: Run, machine: str) -> str:
    when = run.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## {run.name}\n\n"
        "| date | machine | command | time |\n"
        "| --- | --- | --- | --- |\n"
        f"| {when} | {machine} | `{run.command}` | {run.seconds:.0f} s |\n\n"
        f"```text\n{run.output.rstrip()}\n```\n"
    )


def update(path: Path, runs: Iterable[Run], machine: str, order: Sequence[str]) -> None:
    """Replace the sections of ``runs`` in the page at ``path``, others kept, in ``order``."""
    sections = _sections(path.read_text()) if path.exists() else {}
    for run in runs:
        sections[run.name] = render(run, machine)
    known = [name for name in order if name in sections]
    names = known + sorted(set(sections) - set(known))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *(sections[name] for name in names)]))


def _sections(page: str) -> dict[str, str]:
    """``## name`` → that section's text, from a page this module wrote."""
    found: dict[str, str] = {}
    for chunk in page.split("\n## ")[1:]:
        name = chunk.split("\n", 1)[0].strip()
        found[name] = "## " + chunk.rstrip("\n") + "\n"
    return found


def now() -> datetime:
    return datetime.now(UTC)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
