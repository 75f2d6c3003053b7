"""Stopping a service's background loop without ever hanging the process's stop."""

from __future__ import annotations

import asyncio
from typing import Any

STOP_TIMEOUT = 5.0


async def cancel_and_wait(task: asyncio.Task[Any] | None, within: float = STOP_TIMEOUT) -> None:
    """Cancel `task` and wait for it to end, at most `within` seconds.

    Bounded because a cancellation that lands inside some client libraries' I/O
    (redis-py's reads among them) can be swallowed, leaving the loop running:
    loops should also check a stop flag, and a stop must not hang on them.
    """
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=within)
