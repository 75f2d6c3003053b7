"""The overload benchmark's set-ups and what it reads from SIPp's counts."""

from __future__ import annotations

from bench.overload import SETUPS, TIMED_OUT, completed_per_second, edge_of, timed_out_pct
from bench.proxy.results import RunResult


def test_only_the_lag_setup_turns_the_queue_signal_off() -> None:
    envs = {setup: edge_of(setup).env for setup in SETUPS}
    assert envs == {"lag": {"CALLMESH_OVERLOAD_QUEUE_MS": "0"}, "queue": {}}
    assert len({edge_of(setup).namespace for setup in SETUPS}) == len(SETUPS)


def test_a_runs_completed_calls_and_those_timed_out() -> None:
    run = RunResult(
        attempted=3000,
        successful=1500,
        unsuccessful=1500,
        cpu_seconds=1.0,
        system_seconds=0.1,
        failure_reasons={TIMED_OUT: 300, "FailedUnexpectedMessage": 1200},
    )
    assert completed_per_second(run, 10.0) == 150.0
    assert timed_out_pct(run) == 10.0
