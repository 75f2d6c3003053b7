"""The processes' event loop keeps uvloop's speed and a clock as fine as the kernel's: uvloop's
own `time()` is whole milliseconds, and a CI run's 503, answered 0.3 ms after its call was
routed, came out stamped before it."""

from __future__ import annotations

import asyncio
import time

from shared import event_loop


async def bracketed_readings() -> list[tuple[float, float, float]]:
    """The loop's clock read between two reads of the monotonic clock, a hundred times."""
    loop = asyncio.get_running_loop()
    readings = []
    for _ in range(100):
        before = time.monotonic()
        at = loop.time()
        readings.append((before, at, time.monotonic()))
    return readings


def test_the_loops_clock_is_the_monotonic_clock_unrounded() -> None:
    """Each reading lies between the monotonic clock's before and after it: uvloop's own,
    truncated to the millisecond, lies before nearly every one."""
    readings = event_loop.run(bracketed_readings())
    assert [r for r in readings if not r[0] <= r[1] <= r[2]] == []


async def timed_out() -> bool:
    try:
        async with asyncio.timeout(0.002):
            await asyncio.sleep(1)
    except TimeoutError:
        return True
    return False


def test_timeouts_run_out_on_it() -> None:
    """uvloop sets its timers from `time()` (`call_at`), so they follow the clock."""
    assert event_loop.run(timed_out())
