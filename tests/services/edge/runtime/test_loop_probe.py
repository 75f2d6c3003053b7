"""The loop probe keeps the core's view of time current: wall offset, and the clock an answer
is stamped with when its 2xx is relayed; and it records how long datagrams waited in the
sockets, which the load shedder does not act on."""

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


async def test_the_wait_in_the_sockets_is_measured_not_shed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A datagram's wait in the kernel is the backlog a loop reading full bursts hides from
    its lag: recorded per probe, but an edge coping at 2000 cps had waits over a second, so
    it refuses no call (`policy.overload`)."""
    core = proxy()
    core.shedder = LoadShedder()
    driver = ProxyDriver(
        core, MemoryBus(MemoryBroker(), "test", "edge", "edge-a"), instance="edge-a"
    )
    driver.start(unopened_sockets())
    waits = [1.5] * 8
    driver._probe.receive_wait = lambda: waits.pop(0) if waits else 0.0
    before = metrics.RECEIVE_WAIT._sum.get()
    await until(lambda: not waits)
    await driver.stop()
    assert metrics.RECEIVE_WAIT._sum.get() - before >= 1.5 * 8
    assert core.shedder.shedding is False
    assert not [r for r in caplog.records if "refusing new calls" in r.getMessage()]


async def test_the_driver_gives_the_probe_its_sockets_wait() -> None:
    driver = ProxyDriver(proxy(), MemoryBus(MemoryBroker(), "test", "edge", "edge-a"))
    sockets = unopened_sockets()
    driver.start(sockets)
    assert driver._probe.receive_wait == sockets.take_longest_wait
    await driver.stop()
