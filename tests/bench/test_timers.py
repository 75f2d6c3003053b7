"""The timer queue benchmark runs on a few calls and keeps every timer the calls left."""

from __future__ import annotations

from tests.bench.runs import printed_by


def test_a_small_run_prints_its_cost_and_the_timers_still_due() -> None:
    printed = printed_by("bench.timers", "--warm-up", "100", "--calls", "1000", timeout=120)
    # 1.1 s of calls: each one's three 64*T1 timers and its T4 are all still due.
    assert printed.startswith("timer queue: ")
    assert printed.rstrip().endswith(" µs per call, 4400 live timers")
    assert float(printed.split()[2]) > 0


def test_messages_timed_behind_the_clock_keep_every_timer_and_say_so() -> None:
    printed = printed_by(
        "bench.timers", "--warm-up", "100", "--calls", "1000", "--lag-ms", "50", timeout=120
    )
    assert printed.rstrip().endswith(
        " µs per call, 4400 live timers, messages up to 50 ms behind the clock"
    )
