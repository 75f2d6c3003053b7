"""A worker's trace ring, read by the main process for ``GET /v1/calls/{call_id}/trace``.

Each extra worker answers on a Unix socket beside its metrics socket: one line
(a Call-ID) in, its kept messages of that call out as JSON, then it closes.
The main process asks every worker and merges the answers with its own ring,
so the API shows a call whichever worker handled it; a worker that does not
answer in time is left out of that answer.  The sockets are in the pool's own
directory (mode 0700): no other local user reaches them.  A Call-ID with a line
break is never asked for (the worker would read the part before it: another
call), and an asker that sends no line within the limits is dropped quietly.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from services.edge.runtime.trace_ring import TraceRing

MAX_CALL_ID: Final = 1024
TRACE_TIMEOUT: Final = 2.0


async def serve_trace(path: str, ring: TraceRing | None) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(TRACE_TIMEOUT):
                line = await reader.readline()
            call_id = line[:MAX_CALL_ID].strip().decode("utf-8", "replace")
            entries = ring.of_call(call_id) if ring is not None else []
            writer.write(json.dumps([entry.as_json() for entry in entries]).encode())
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass  # the asker went away, or sent no line (ValueError: over the stream's limit)
        finally:
            writer.close()

    return await asyncio.start_unix_server(answer, path)


async def read_trace(path: str, call_id: str) -> list[dict[str, Any]]:
    """A worker's entries for the call ([] when it does not answer in time, or has none)."""
    if "\n" in call_id or "\r" in call_id:
        return []  # no Call-ID has one; the worker would answer for the text before it
    try:
        async with asyncio.timeout(TRACE_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(call_id.encode() + b"\n")
                await writer.drain()
                found = json.loads(await reader.read())
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return []
    return found if isinstance(found, list) else []
