"""The HEP sender against a hostile TCP collector: one that never reads and talks back."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from shared.hep import metrics
from shared.hep.destination import HepDestination
from shared.hep.sender import TCP_BUFFER_LIMIT, HepSender
from tests.shared.bus.support import until

PACKET = b"HEP3" + (6 + 994).to_bytes(2, "big") + b"x" * 994


async def test_a_collector_that_stalls_and_talks_back_costs_bounded_memory_and_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It reads nothing (our buffer to it fills) and writes 8 MB at us (read and dropped):
    packets past the buffer bound are dropped as `slow`, one log line, never a traceback."""
    accepted: list[asyncio.StreamWriter] = []

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        cast(asyncio.Transport, writer.transport).pause_reading()  # never reads what we send
        for _ in range(128):
            writer.write(b"\x00" * 65536)  # and talks back
            await writer.drain()

    server = await asyncio.start_server(hostile, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HepSender([HepDestination("tcp", "127.0.0.1", port)], queue_size=100_000)
    await until(lambda: bool(accepted))
    slow = metrics.DROPPED.get("slow", 0)
    try:
        with caplog.at_level(logging.WARNING, "callmesh.hep"):
            for _ in range(40):  # 40 MB offered, far past what the kernel and our buffer hold
                for _ in range(1000):
                    sender.offer(PACKET)
                await asyncio.sleep(0.01)
            await until(lambda: metrics.DROPPED.get("slow", 0) > slow)
            target = sender._targets[0]
            transport = getattr(target, "transport", None)
            assert transport is not None
            assert transport.get_write_buffer_size() <= TCP_BUFFER_LIMIT + len(PACKET)
        lines = [r for r in caplog.records if r.name == "callmesh.hep"]
        assert [r.getMessage() for r in lines] == [
            f"HEP to tcp:127.0.0.1:{port}: collector slow; dropping"
        ]
        assert not any(r.exc_info for r in caplog.records)
    finally:
        await sender.stop()
        server.close()
        for writer in accepted:
            writer.transport.abort()
