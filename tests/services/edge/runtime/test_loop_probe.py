"""The loop probe keeps the core's view of time current: wall offset, and the clock an answer
is stamped with when its 2xx is relayed."""

from __future__ import annotations

import asyncio
import time

from services.edge.proxy.call_events import CallEvents
from services.edge.runtime.loop_probe import set_wall_offset
from tests.services.edge.runtime.test_driver import proxy


async def test_the_call_events_read_the_loops_clock_and_wall_offset() -> None:
    core, loop = proxy(), asyncio.get_running_loop()
    set_wall_offset(core, loop)
    events = core.call_events
    assert isinstance(events, CallEvents) and events.clock is not None
    before = loop.time()
    assert before <= events.clock() <= loop.time()
    assert abs(events.at(events.clock()) - time.time()) < 0.05
