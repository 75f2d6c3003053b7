"""Set-ups measured in turn: the order turns every repeat, idle CPU is taken out, and each
repeat's ratio compares runs of the same repeat."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.proxy.results import RunResult
from bench.proxy.setups import in_turn, net_of_idle, print_rows, row_of


def run(calls: int, cpu: float, failed: int = 0) -> RunResult:
    return RunResult(calls, calls - failed, failed, cpu, cpu / 10, {})


def test_each_set_up_goes_first_in_turn() -> None:
    setups = ["off", "udp", "tcp"]
    orders = [in_turn(setups, n) for n in range(4)]
    assert orders == [
        ["off", "udp", "tcp"],
        ["udp", "tcp", "off"],
        ["tcp", "off", "udp"],
        ["off", "udp", "tcp"],
    ]


def test_the_idle_cpu_over_the_run_is_taken_out() -> None:
    assert net_of_idle(run(1000, 2.0), idle=0.05, seconds=10).cpu_seconds == pytest.approx(1.5)


def test_a_rows_ratios_pair_runs_of_the_same_repeat() -> None:
    baseline = [run(1000, 1.0).cpu_ms_per_call, run(1000, 2.0).cpu_ms_per_call]
    runs = [(run(1000, 1.5), 0.1), (run(1000, 2.2, failed=10), 0.3)]
    row = row_of("relayed", runs, baseline)
    assert row.ratios == pytest.approx([1.5, 1.1])
    assert row.cpu_us == pytest.approx(1850)  # the median of 1500 and 2200
    assert row.idle_us == pytest.approx(200)
    assert row.failed_pct == pytest.approx(0.5)
    assert math.isnan(row_of("x", [(run(10, 1.0), 0.0)], [0.0]).ratios[0])


def test_the_rows_are_printed_with_the_median_ratio_and_its_range(
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = [run(1000, 1.0).cpu_ms_per_call] * 3
    timed = ((0.9, 2.0), (0.8, 6.0), (1.1, 5.0))  # CPU seconds, answer ms
    runs = [(replace(run(1000, cpu), answer_ms=ms), 0.0) for cpu, ms in timed]
    print_rows([row_of("5", runs, baseline)], "0")
    header, row, note = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "setup", "CPU", "µs/call", "kernel", "idle", "failed", "%", "÷", "0", "lowest", "highest",
        "answer", "ms",
    ]  # fmt: skip # the header's words, as printed
    assert row.split() == ["5", "900", "90", "0", "0.00", "0.900", "0.800", "1.100", "5"]
    assert note.startswith("÷ 0: the median of each repeat's ratio")
