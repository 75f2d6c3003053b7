"""What one benchmark run measured, and how it is shown: table rows and JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RunResult:
    """One offering of one rate, as SIPp and /proc saw it."""

    attempted: int
    successful: int
    unsuccessful: int
    cpu_seconds: float
    system_seconds: float
    """The kernel's part of ``cpu_seconds`` (stime)."""
    failure_reasons: dict[str, int]
    answer_ms: float = 0.0
    """SIPp's mean time from a call's INVITE to its 200, in whole milliseconds as SIPp
    counts (0: the scenario times none)."""

    @property
    def failed_pct(self) -> float:
        return 100 * self.unsuccessful / self.attempted if self.attempted else 100.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_seconds / self.attempted if self.attempted else 0.0

    @property
    def kernel_ms_per_call(self) -> float:
        return 1000 * self.system_seconds / self.attempted if self.attempted else 0.0


@dataclass(frozen=True, slots=True)
class StepResult:
    """A rate step: medians over its runs (each metric on its own)."""

    rate: int
    duration_s: float
    calls: float
    failed_pct: float
    cpu_ms_per_call: float
    kernel_ms_per_call: float
    runs: list[RunResult] = field(default_factory=list)

    @classmethod
    def of(cls, rate: int, duration_s: float, runs: list[RunResult]) -> StepResult:
        return cls(
            rate=rate,
            duration_s=duration_s,
            calls=statistics.median(run.attempted for run in runs),
            failed_pct=statistics.median(run.failed_pct for run in runs),
            cpu_ms_per_call=statistics.median(run.cpu_ms_per_call for run in runs),
            kernel_ms_per_call=statistics.median(run.kernel_ms_per_call for run in runs),
            runs=runs,
        )


_ROW = "{proxy:<10} {rate:>7} {calls:>8} {failed:>9} {cpu:>12} {kernel:>15}"


def table_header() -> str:
    return _ROW.format(
        proxy="proxy",
        rate="rate/s",
        calls="calls",
        failed="failed %",
        cpu="CPU ms/call",
        kernel="of it kernel ms",
    )


def table_row(proxy: str, step: StepResult) -> str:
    return _ROW.format(
        proxy=proxy,
        rate=step.rate,
        calls=f"{step.calls:g}",
        failed=f"{step.failed_pct:.3f}",
        cpu=f"{step.cpu_ms_per_call:.4f}",
        kernel=f"{step.kernel_ms_per_call:.4f}",
    )


def results_json(config: dict[str, Any], results: dict[str, list[StepResult]]) -> str:
    """The run's settings and every step with its individual runs."""

    def step_dict(step: StepResult) -> dict[str, object]:
        return {
            **asdict(step),
            "runs": [
                {
                    **asdict(run),
                    "failed_pct": run.failed_pct,
                    "cpu_ms_per_call": run.cpu_ms_per_call,
                    "kernel_ms_per_call": run.kernel_ms_per_call,
                }
                for run in step.runs
            ],
        }

    return json.dumps(
        {
            "config": config,
            "proxies": {
                name: [step_dict(step) for step in steps] for name, steps in results.items()
            },
        },
        indent=2,
        default=str,  # the config's scenario paths
    )
