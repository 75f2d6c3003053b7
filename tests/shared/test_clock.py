"""The wall offset is read between two reads of the loop's clock: a process preempted between
a plain pair of reads measures it off by as long as it was away, and every message stamped
with it as much."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from shared.clock import OFFSET_READS, wall_offset


def reader(values: list[float]) -> tuple[Callable[[], float], Iterator[float]]:
    """A clock that reads `values` in turn, and the iterator to see how many it gave."""
    it = iter(values)
    return (lambda: next(it)), it


def test_a_wide_bracket_is_read_again_and_the_first_tight_one_taken() -> None:
    """Preempted for 5 ms after the wall read, then a 2 µs bracket: that one, no third."""
    loop_time, loop_left = reader([10.0, 10.005, 20.0, 20.000002, 30.0, 30.0])
    wall_time, wall_left = reader([1_000.0, 1_010.0, 1_020.0])
    offset = wall_offset(loop_time, wall_time)
    assert offset == pytest.approx(1_010.0 - 20.000001, abs=1e-9)
    assert (list(loop_left), list(wall_left)) == ([30.0, 30.0], [1_020.0])


def test_with_every_bracket_wide_the_narrowest_is_taken() -> None:
    loop_time, _ = reader([10.0, 10.005, 20.0, 20.0002, 30.0, 30.001])
    wall_time, _ = reader([1_000.0, 1_010.0, 1_020.0005])
    assert wall_offset(loop_time, wall_time) == pytest.approx(1_010.0 - 20.0001, abs=1e-9)


def test_a_tight_first_bracket_is_the_only_read() -> None:
    loop_time, loop_left = reader([10.0, 10.000001] + [0.0] * 2 * (OFFSET_READS - 1))
    wall_time, _ = reader([1_000.0] * OFFSET_READS)
    assert wall_offset(loop_time, wall_time) == pytest.approx(1_000.0 - 10.0000005, abs=1e-9)
    assert len(list(loop_left)) == 2 * (OFFSET_READS - 1)


def test_on_the_real_clocks_it_is_the_difference_of_their_readings() -> None:
    offset = wall_offset(time.monotonic)
    assert abs(offset - (time.time() - time.monotonic())) < 0.01
