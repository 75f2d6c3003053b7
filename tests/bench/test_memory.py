from __future__ import annotations

from bench.memory import describe, over_budget, random_read_ns

COSTS = {80: 25.0, 2 << 20: 30.0, 4 << 20: 60.0, 8 << 20: 150.0}


def test_describe_gives_each_size_over_the_cached_read() -> None:
    assert describe(COSTS) == (
        "random read, ns over a cached one (25 ns): 2 MiB +5, 4 MiB +35, 8 MiB +125"
    )


def test_over_budget_names_the_first_size_past_the_budget() -> None:
    assert over_budget(COSTS, 100).endswith("exceeds it from 8 MiB up")
    assert over_budget(COSTS, 200).endswith("exceeds it at none of the sizes measured")


def test_a_random_read_is_timed_per_read() -> None:
    """Per read, not per loop: a Python loop step costs nanoseconds, never microseconds.

    The bounds are two orders of magnitude either side of the ~30 ns a step costs, so a
    busy machine stays inside them while a total (x1000) or a zero does not.
    """
    cost = random_read_ns(4096, reads=1000, repeats=3)
    assert 1.0 < cost < 5_000.0, cost
