"""The flood counts' exchange on the real Redis: two workers' detectors, one cluster; and the
pace of batches under a spoofed-source flood."""

from __future__ import annotations

import asyncio

import pytest

from services.edge.protection import FloodDetector, FloodSettings, FloodVerdict
from services.edge.runtime.flood_share import MIN_GAP, FloodShareRunner, pause_after
from shared.protection.flood_counts import FloodCounts
from shared.store import Store

FLOODER = "192.0.2.66"


def test_a_full_batch_waits_longer_than_a_small_one() -> None:
    assert pause_after(3) == MIN_GAP
    assert pause_after(1000) == 0.5  # at most 2,000 sources a second per worker


@pytest.mark.integration
async def test_two_workers_block_a_source_neither_saw_past_the_limit(stores: list[Store]) -> None:
    loop = asyncio.get_running_loop()
    pikes = [FloodDetector(FloodSettings(limit=30, period=10.0)) for _ in stores]
    runners = [
        FloodShareRunner(FloodCounts(store), pike, 0.1, loop)
        for store, pike in zip(stores, pikes, strict=True)
    ]
    now = loop.time()
    for pike, runner in zip(pikes, runners, strict=True):
        assert all(pike.check(FLOODER, now) == FloodVerdict.ALLOW for _ in range(15))
        assert await runner.exchange() == 1
    first, second = pikes
    assert first.check(FLOODER, loop.time()) == FloodVerdict.ALLOW  # knows 15 of its own
    await runners[0].exchange()  # now 31 in the cluster: past 30, blocked there
    assert first.check(FLOODER, loop.time()) == FloodVerdict.BLOCKED  # its batch: it announces
    assert first.check(FLOODER, loop.time()) == FloodVerdict.DROP
    assert await runners[1].exchange() == 0  # nothing to send, but the news comes back
    assert second.check(FLOODER, loop.time()) == FloodVerdict.DROP


@pytest.mark.integration
async def test_a_stop_landing_as_a_batch_falls_due_ends_the_loop(stores: list[Store]) -> None:
    """The stop's cancel lands just as the wait for a due batch ends (the order below makes
    it so every time): on Python 3.11 `asyncio.wait_for` returned there instead of raising,
    the loop went on, and `stop` waited for it for good."""
    loop = asyncio.get_running_loop()
    pike = FloodDetector(FloodSettings(limit=30, period=10.0))
    runner = FloodShareRunner(FloodCounts(stores[0]), pike, 60.0, loop)
    runner.start()
    await asyncio.sleep(0.05)  # it waits for a batch, a minute at most
    stopping: list[asyncio.Task[None]] = []
    assert pike.on_due is not None
    pike.on_due()
    loop.call_soon(lambda: stopping.append(loop.create_task(runner.stop())))
    await asyncio.sleep(0.05)
    ended, _ = await asyncio.wait(stopping, timeout=5)  # not a timeout that cancels it
    assert ended, "the loop went on past its stop"
