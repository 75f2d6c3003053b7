"""The loop probe keeps the core's view of time current: wall offset, and the clock an answer
is stamped with when its 2xx is relayed; and it tells the load shedder how far behind the
worker is."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.edge import metrics
from services.edge.policy.overload import LoadShedder
from services.edge.proxy.call_events import CallEvents
from services.edge.runtime.driver import ProxyDriver
from services.edge.runtime.loop_probe import set_wall_offset
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.services.edge.runtime.test_driver import proxy, unopened_sockets
from tests.shared.bus.support import until


async def test_the_call_events_read_the_loops_clock_and_wall_offset() -> None:
    core, loop = proxy(), asyncio.get_running_loop()
    set_wall_offset(core, loop)
    events = core.call_events
    assert isinstance(events, CallEvents) and events.clock is not None
    before = loop.time()
    assert before <= events.clock() <= loop.time()
    assert abs(events.at(events.clock()) - time.time()) < 0.05


async def test_datagrams_waiting_in_the_sockets_start_the_shedding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A saturated worker reads full bursts and runs its timers on time while datagrams wait
    for seconds in the kernel (measured at 2000 cps): that wait sheds new calls too."""
    core = proxy()
    core.shedder = LoadShedder()
    bus = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")
    driver = ProxyDriver(core, bus, instance="edge-a")
    driver.start(unopened_sockets())
    waits = [0.0] * 5 + [0.4] * 100
    driver._probe.receive_wait = lambda: waits.pop(0) if waits else 0.0
    before = metrics.RECEIVE_WAIT._sum.get()
    await until(lambda: core.shedder is not None and core.shedder.shedding)
    await driver.stop()
    assert len(waits) >= 100 - 4  # the third late probe in a row started it
    assert metrics.RECEIVE_WAIT._sum.get() - before >= 0.4 * 3
    [line] = [r.getMessage() for r in caplog.records if "refusing new calls" in r.getMessage()]
    assert "datagrams waiting 400 ms" in line


async def test_no_wait_and_no_lag_shed_nothing() -> None:
    core = proxy()
    core.shedder = LoadShedder()
    driver = ProxyDriver(
        core, MemoryBus(MemoryBroker(), "test", "edge", "edge-a"), instance="edge-a"
    )
    driver.start(unopened_sockets())
    probed = 0

    def no_wait() -> float:
        nonlocal probed
        probed += 1
        return 0.0

    driver._probe.receive_wait = no_wait
    await until(lambda: probed >= 5)
    await driver.stop()
    assert core.shedder.shedding is False
