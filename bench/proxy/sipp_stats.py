"""Call counts from the statistics file SIPp writes with ``-trace_stat``.

SIPp appends a row per dump period and one when it quits, each holding the
cumulative counters; the last complete row is the outcome of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.proxy.errors import BenchError

_ATTEMPTED = "OutgoingCall(C)"
_SUCCESSFUL = "SuccessfulCall(C)"
_FAILED = "FailedCall(C)"
_FAILURE_REASON_PREFIX = "Failed"
_CUMULATIVE_SUFFIX = "(C)"
_ANSWER = "ResponseTime1(C)"
"""The mean of the caller scenario's first timed round trip (`rtd`: its INVITE to the 200)."""


@dataclass(frozen=True, slots=True)
class CallCounts:
    attempted: int
    successful: int
    failed: int
    failure_reasons: dict[str, int] = field(default_factory=dict)
    answer_ms: float = 0.0
    """The mean time from a call's INVITE to its 200 (0: not timed by the scenario)."""

    @property
    def unsuccessful(self) -> int:
        """Failed plus never finished: a call that is not a success is a failure."""
        return self.attempted - self.successful


def _split(line: str) -> list[str]:
    """Fields of a row; SIPp ends every row with a separator, not a value."""
    fields = line.rstrip("\r\n").split(";")
    if fields[-1] == "":
        fields.pop()
    return fields


def _count(row: dict[str, str], column: str, path: Path) -> int:
    try:
        return int(row[column])
    except KeyError:
        raise BenchError(f"SIPp statistics {path} lack column {column}") from None
    except ValueError:
        raise BenchError(f"SIPp statistics {path}: {column} is {row[column]!r}") from None


def _milliseconds(row: dict[str, str], column: str, path: Path) -> float:
    """A SIPp duration, ``hh:mm:ss:microseconds``, in milliseconds (0 without the column)."""
    if column not in row:
        return 0.0
    try:
        hours, minutes, seconds, micro = (int(part) for part in row[column].split(":"))
    except ValueError:
        raise BenchError(f"SIPp statistics {path}: {column} is {row[column]!r}") from None
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micro / 1000


def parse_stat_file(path: Path) -> CallCounts:
    """Counts from the last complete row; a half-written last row is skipped."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        raise BenchError(f"SIPp wrote no statistics file {path}") from None
    header_at = max(
        (i for i, line in enumerate(lines) if line.startswith("StartTime;")), default=-1
    )
    if header_at < 0:
        raise BenchError(f"SIPp statistics {path} have no header row")
    header = _split(lines[header_at])
    rows = [_split(line) for line in lines[header_at + 1 :]]
    complete = [values for values in rows if len(values) == len(header)]
    if not complete:
        raise BenchError(f"SIPp statistics {path} have no complete data row")
    row = dict(zip(header, complete[-1], strict=True))
    reasons = {
        column.removesuffix(_CUMULATIVE_SUFFIX): _count(row, column, path)
        for column in header
        if column.startswith(_FAILURE_REASON_PREFIX)
        and column.endswith(_CUMULATIVE_SUFFIX)
        and column != _FAILED
    }
    return CallCounts(
        attempted=_count(row, _ATTEMPTED, path),
        successful=_count(row, _SUCCESSFUL, path),
        failed=_count(row, _FAILED, path),
        failure_reasons={reason: n for reason, n in reasons.items() if n},
        answer_ms=_milliseconds(row, _ANSWER, path),
    )
