"""The OPTIONS prober's own timers, on both event loops the services run on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from services.health.prober import OptionsProber
from shared.settings import ListenAddress
from tests.services.edge.support import LOOPBACK

PROBES = 10
TIMEOUT = 0.001
"""So short (T1 = 16 µs) that the first probe's timer is already due when it is set, and every
next probe started in the same turn of the loop finds it so."""
Main = Callable[[], Coroutine[Any, Any, None]]


def run_on(loop_kind: str, main: Main) -> None:
    if loop_kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_probes_of_a_late_loop_time_out_cleanly(loop_kind: str) -> None:
    """A loop running late sets timers whose deadline has passed: uvloop answers those with a
    plain `Handle` without `when()`, which the prober asked when the next probe started (a
    drill's health service, late under load, failed probes so)."""

    async def main() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind((LOOPBACK, 0))  # bound, never answering: every probe times out
            target = f"sip:{LOOPBACK}:{silent.getsockname()[1]}"
            prober = OptionsProber(ListenAddress("udp", LOOPBACK, 0), TIMEOUT)
            await prober.open()
            try:
                probes = (prober.probe(target) for _ in range(PROBES))
                outcomes = await asyncio.wait_for(asyncio.gather(*probes), 10)
            finally:
                await prober.close()
        assert [outcome.status for outcome in outcomes] == [None] * PROBES, outcomes
        assert [outcome.error for outcome in outcomes] == ["timeout"] * PROBES, outcomes
        assert errors == []

    run_on(loop_kind, main)
