"""The OPTIONS prober's own timers, on both event loops the services run on, and what an
answered probe keeps."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from services.health.prober import OptionsProber
from shared.settings import ListenAddress
from shared.sip.message import Request, parse_message
from shared.sip.responses import make_response
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


def test_an_answered_probe_lingers_as_its_bytes() -> None:
    """Timer K keeps an answered probe's transaction for T4 to absorb the answer's
    retransmissions: nothing reads its request again, so it is held as bytes."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((LOOPBACK, 0))
            peer.setblocking(False)
            prober = OptionsProber(ListenAddress("udp", LOOPBACK, 0), 2.0)
            await prober.open()

            async def answer() -> None:
                data, address = await loop.sock_recvfrom(peer, 65535)
                request = parse_message(data)
                assert isinstance(request, Request)
                await loop.sock_sendto(peer, make_response(request, 200).to_bytes(), address)

            try:
                answering = asyncio.create_task(answer())
                outcome = await asyncio.wait_for(
                    prober.probe(f"sip:{LOOPBACK}:{peer.getsockname()[1]}"), 10
                )
                await answering
                (client,) = prober.table._clients.values()
            finally:
                await prober.close()
        assert outcome.status == 200
        assert client.answered
        assert (client._request, client._held) == (None, client.data)

    asyncio.run(main())  # uvloop has no `sock_recvfrom`
