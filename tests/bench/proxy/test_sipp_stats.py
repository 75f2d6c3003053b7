from __future__ import annotations

from pathlib import Path

import pytest

from bench.proxy.errors import BenchError
from bench.proxy.sipp_stats import parse_stat_file

HEADER = (
    "StartTime;CurrentTime;OutgoingCall(C);SuccessfulCall(P);SuccessfulCall(C);"
    "FailedCall(C);FailedMaxUDPRetrans(C);FailedUnexpectedMessage(C);FailedCallRejected(C);"
)


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "stat.csv"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_last_row_holds_the_cumulative_counts(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER,
        "t0;t1;50;50;48;0;0;0;0;",
        "t0;t2;100;40;97;2;1;1;0;",
    )

    counts = parse_stat_file(path)

    assert (counts.attempted, counts.successful, counts.failed) == (100, 97, 2)
    assert counts.unsuccessful == 3
    assert counts.failure_reasons == {"FailedMaxUDPRetrans": 1, "FailedUnexpectedMessage": 1}


def test_the_answer_time_is_read_in_milliseconds(tmp_path: Path) -> None:
    """SIPp's ``hh:mm:ss:microseconds``; a file without the column (no `rtd`) gives 0."""
    timed = _write(
        tmp_path, "StartTime;OutgoingCall(C);SuccessfulCall(C);FailedCall(C);ResponseTime1(C);",
        "t0;10;10;0;00:00:01:012500;",
    )  # fmt: skip # a header and its row, as SIPp writes them
    assert parse_stat_file(timed).answer_ms == pytest.approx(1012.5)
    untimed = _write(tmp_path, HEADER, "t0;t1;50;50;48;0;0;0;0;")
    assert parse_stat_file(untimed).answer_ms == 0.0


def test_half_written_last_row_is_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER, "t0;t1;50;50;50;0;0;0;0;", "t0;t2;100;4")

    assert parse_stat_file(path).attempted == 50


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        ((), "no header row"),
        ((HEADER,), "no complete data row"),
        (("StartTime;OutgoingCall(C);", "t0;10;"), "lack column SuccessfulCall(C)"),
        ((HEADER, "t0;t1;x;50;50;0;0;0;0;"), "OutgoingCall(C) is 'x'"),
    ],
)
def test_unusable_file_is_a_clear_error(
    tmp_path: Path, lines: tuple[str, ...], complaint: str
) -> None:
    with pytest.raises(BenchError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        parse_stat_file(_write(tmp_path, *lines))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no statistics file"):
        parse_stat_file(tmp_path / "absent.csv")
