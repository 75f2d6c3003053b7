"""The loop probe keeps the core's view of time current: wall offset, and the clock an answer
is stamped with when its 2xx is relayed; it records how long datagrams waited in the
sockets, and has new calls refused while a queue stands there (not for the longest wait),
and while the call events waiting for the bus pile up."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.edge import metrics
from services.edge.policy.overload import LoadShedder
from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.runtime.driver import ProxyDriver
from services.edge.runtime.loop_probe import SHEDDING_CAUSES, set_wall_offset
from services.edge.runtime.publisher import MAX_BACKLOG
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.services.edge.proxy.test_core import CALLER, UDP_IN, invite
from tests.services.edge.runtime.test_driver import SilentBroker, proxy, unopened_sockets
from tests.shared.bus.support import until


async def test_the_call_events_read_the_loops_clock_and_wall_offset() -> None:
    core, loop = proxy(), asyncio.get_running_loop()
    set_wall_offset(core, loop)
    events = core.call_events
    assert isinstance(events, CallEvents) and events.clock is not None
    before = loop.time()
    assert before <= events.clock() <= loop.time()
    assert abs(events.at(events.clock()) - time.time()) < 0.05


def shedding_driver() -> tuple[LoadShedder, ProxyDriver]:
    """A started driver whose core sheds load with the default settings, on the memory bus."""
    core = proxy()
    core.shedder = shedder = LoadShedder()
    driver = ProxyDriver(
        core, MemoryBus(MemoryBroker(), "test", "edge", "edge-a"), instance="edge-a"
    )
    driver.start(unopened_sockets())
    return shedder, driver


async def test_the_longest_wait_in_the_sockets_is_measured_not_shed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A datagram's longest wait in the kernel is recorded per probe, but an edge coping at
    2000 cps had waits over a second (a burst, a pause) while the queue drained, so it refuses
    no call (`policy.overload`)."""
    shedder, driver = shedding_driver()
    waits = [1.5] * 8
    driver._probe.receive_wait = lambda: waits.pop(0) if waits else 0.0
    before = metrics.RECEIVE_WAIT._sum.get()
    await until(lambda: not waits)
    await driver.stop()
    assert metrics.RECEIVE_WAIT._sum.get() - before >= 1.5 * 8
    assert shedder.shedding is False
    assert not [r for r in caplog.records if "refusing new calls" in r.getMessage()]


async def test_new_calls_are_refused_while_a_queue_stands_in_the_sockets_and_taken_once_it_drains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every datagram of probe after probe waiting in a socket's buffer (the shortest wait)
    is a worker behind, though its loop runs its timers on time: new calls are refused until
    the queue drains.  A second spell within seconds is not logged again (a worker at its
    capacity has one a second or so)."""
    shedder, driver = shedding_driver()
    standing = [0.5] * 4
    driver._probe.standing_wait = lambda: standing.pop(0) if standing else 0.0
    before = metrics.RECEIVE_QUEUE._sum.get()
    await until(lambda: shedder.shedding)
    driver.on_message(invite(), CALLER, UDP_IN, None)
    assert shedder.refused == 1  # answered 503, not routed
    await until(lambda: not shedder.shedding)
    driver.on_message(
        invite(branch="z9hG4bKnext").replace(b"call-1", b"call-2"), CALLER, UDP_IN, None
    )
    assert shedder.refused == 1  # not refused: on to the router
    assert metrics.RECEIVE_QUEUE._sum.get() - before >= 0.5 * 4
    standing.extend([0.5] * 4)
    await until(lambda: shedder.episodes == 2)
    await until(lambda: not shedder.shedding)
    await driver.stop()
    lines = [r.getMessage() for r in caplog.records]
    starts = [m for m in lines if m.startswith("a queue stands in a socket's buffer")]
    assert starts == [
        "a queue stands in a socket's buffer (every datagram it gave in the last 100 ms waited"
        " 500 ms or more): refusing new calls (503) until it drains"
    ]
    ends = [m for m in lines if m.startswith("socket queue caught up")]
    assert ends == ["socket queue caught up: accepting new calls again (1 refused so far)"]


async def test_the_driver_gives_the_probe_its_sockets_waits() -> None:
    driver = ProxyDriver(proxy(), MemoryBus(MemoryBroker(), "test", "edge", "edge-a"))
    sockets = unopened_sockets()
    driver.start(sockets)
    assert driver._probe.receive_wait == sockets.take_longest_wait
    assert driver._probe.standing_wait == sockets.take_standing_wait
    await driver.stop()


async def test_new_calls_are_refused_while_call_events_pile_up_and_taken_once_they_are_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the publisher's bound a call event is dropped, and its call record with it: the
    edge refuses new calls well before (half the bound), not once records are lost."""
    core = proxy()
    core.shedder = LoadShedder()
    bus = SilentBroker(watched=1)
    driver = ProxyDriver(core, bus, instance="edge-a")
    driver.start(unopened_sockets())
    publisher = driver.publisher
    event = CallEvents("edge-a").cancelled(CallNotes("call-1", "a1"), 0.0)
    driver._run([event] * (MAX_BACKLOG // 2 + 100))  # 64 in flight, the rest waiting
    await until(lambda: core.shedder is not None and core.shedder.shedding)
    assert publisher.waiting >= MAX_BACKLOG // 2 and publisher.dropped == 0
    driver.on_message(invite(), CALLER, UDP_IN, None)
    assert core.shedder.refused == 1  # answered 503, not routed
    bus.release.set()
    await until(lambda: core.shedder is not None and not core.shedder.shedding)
    assert publisher.dropped == 0
    driver.on_message(
        invite(branch="z9hG4bKnext").replace(b"call-1", b"call-2"), CALLER, UDP_IN, None
    )
    assert core.shedder.refused == 1  # not refused: on to the router
    await driver.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert any("call events waiting for the bus (of 20000 at most): refusing" in m for m in lines)
    assert any(
        m == "call events caught up: accepting new calls again (1 refused so far)" for m in lines
    )


async def test_each_cause_of_shedding_starts_with_its_own_line() -> None:
    """The lines are keyed by the cause the shedder named (`SHEDDING_CAUSES`), each with its
    own figure."""
    _shedder, driver = shedding_driver()
    lines = {cause: driver._probe._start_line(cause, 0.25, 0.3) for cause in SHEDDING_CAUSES}
    await driver.stop()
    assert lines["event loop"].startswith("event loop 250 ms late: refusing new calls (503)")
    assert "waited 300 ms or more" in lines["socket queue"]
    assert lines["call events"].startswith("0 call events waiting for the bus (of 20000 at most)")
