"""The processes' event loop keeps uvloop's speed and a clock as fine as the kernel's: uvloop's
own `time()` is whole milliseconds, and a CI run's 503, answered 0.3 ms after its call was
routed, came out stamped before it."""

from __future__ import annotations

import asyncio
import time

from shared import event_loop


def busy_wait(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def clock_readings() -> tuple[float, float, float]:
    """The loop's clock, the monotonic clock, and the loop's clock 0.3 ms of work later."""
    loop = asyncio.get_running_loop()
    first, monotonic = loop.time(), time.monotonic()
    busy_wait(0.0003)
    return first, monotonic, loop.time()


def test_the_loops_clock_is_the_monotonic_clock_to_the_microsecond() -> None:
    first, monotonic, later = event_loop.run(clock_readings())
    assert abs(monotonic - first) < 50e-6
    assert 0.0003 <= later - first < 0.0009  # uvloop's own reads 0 or 1 ms apart here


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
