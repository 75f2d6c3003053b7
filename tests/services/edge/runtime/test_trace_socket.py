"""A worker's trace socket, asked as the API's process asks it, and by a hostile asker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.edge.runtime.trace_ring import TraceEntry, TraceRing
from services.edge.runtime.trace_socket import TRACE_TIMEOUT, read_trace, serve_trace

INVITE = b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\nCall-ID: a@x\r\n\r\n"


@pytest.fixture
async def socket_path(tmp_path: Path) -> AsyncIterator[str]:
    ring = TraceRing(10)
    ring.add(TraceEntry(1.0, "in", "udp", ("192.0.2.7", 5060), ("10.0.0.1", 5060), INVITE))
    path = str(tmp_path / "trace-w1.sock")
    server = await serve_trace(path, ring)
    yield path
    server.close()
    await server.wait_closed()


async def test_a_call_is_read_from_a_worker(socket_path: str) -> None:
    assert [entry["call_id"] for entry in await read_trace(socket_path, "a@x")] == ["a@x"]


async def test_a_call_id_with_a_line_break_is_not_another_calls_trace(socket_path: str) -> None:
    """The worker reads one line: asked for `a@x\\nother`, it answered with call a@x."""
    assert await read_trace(socket_path, "a@x\nother") == []
    assert await read_trace(socket_path, "a@x\r") == []


async def test_an_asker_without_a_line_is_dropped_without_a_traceback(
    socket_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"x" * 200_000)  # past the stream's line limit, no line break
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert not any(record.exc_info for record in caplog.records)
    assert await read_trace(socket_path, "a@x")  # and it still answers


async def test_a_worker_that_hangs_is_left_out_within_the_timeout(tmp_path: Path) -> None:
    """A worker stuck in a long loop accepts (the kernel does) and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    path = str(tmp_path / "trace-w2.sock")
    server = await asyncio.start_unix_server(hang, path)
    try:
        started = asyncio.get_running_loop().time()
        assert await read_trace(path, "a@x") == []
        assert asyncio.get_running_loop().time() - started < TRACE_TIMEOUT + 1
    finally:
        server.close()
        for writer in held:
            writer.close()
