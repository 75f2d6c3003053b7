from __future__ import annotations

import asyncio

from services.edge.runtime.loop_timer import TIMER_TICK, LoopTimer
from tests.shared.bus.support import until


class SpreadDeadlines:
    """Timers that fall every half millisecond, as a busy edge's transactions do; it records
    when each expired and how often the loop timer woke it, and re-arms it as the driver does."""

    def __init__(self, first: float, count: int) -> None:
        self.pending = [first + n * 0.0005 for n in range(count)]
        self.expired: list[tuple[float, float]] = []
        """(deadline, the loop's time when it expired)"""
        self.woken_at: list[float] = []
        self.timer: LoopTimer | None = None

    def fire(self) -> None:
        now = asyncio.get_running_loop().time()
        self.woken_at.append(now)
        while self.pending and self.pending[0] <= now:
            self.expired.append((self.pending.pop(0), now))
        assert self.timer is not None
        if self.pending:
            self.timer.arm(self.pending[0])


async def test_deadlines_due_together_expire_together_on_a_tick() -> None:
    """Deadlines spread over 20 ms expire in a handful of wake-ups (one each before), the
    first not before its tick, and the timer stands on a tick at or after the earliest one."""
    loop = asyncio.get_running_loop()
    core = SpreadDeadlines(loop.time() + 0.0123, 40)
    timer = core.timer = LoopTimer(loop, core.fire)
    for deadline in reversed(core.pending):  # each earlier than the last: the timer moves
        timer.arm(deadline)
    armed = timer.at
    assert armed is not None
    assert core.pending[0] <= armed < core.pending[0] + TIMER_TICK
    assert abs(armed / TIMER_TICK - round(armed / TIMER_TICK)) < 1e-6
    await until(lambda: not core.pending)
    assert len(core.expired) == 40
    assert core.woken_at[0] >= armed - 1e-6  # (the loop's clock resolution)
    assert len(core.woken_at) <= 6  # 20 ms of deadlines over 5 ms ticks; one per deadline before
    assert all(deadline <= now for deadline, now in core.expired)


async def test_a_later_deadline_leaves_an_earlier_tick_and_cancel_disarms() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = LoopTimer(loop, lambda: fired.append(loop.time()))
    now = loop.time()
    timer.arm(now + 0.5)
    first = timer.at
    timer.arm(now + 1.0)
    assert timer.at == first
    timer.arm(now + 0.0001)
    assert timer.at is not None and first is not None and timer.at < first
    timer.cancel()
    assert timer.at is None
    await asyncio.sleep(0.02)
    assert fired == []
    timer.arm(loop.time())  # due now: fires on the next tick, once
    await until(lambda: len(fired) == 1)
    assert timer.at is None
    await asyncio.sleep(2 * TIMER_TICK)
    assert len(fired) == 1
    timer.close()
    timer.arm(loop.time())  # closed: never again
    assert timer.at is None
    await asyncio.sleep(2 * TIMER_TICK)
    assert len(fired) == 1
