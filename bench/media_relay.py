"""What relaying a call's media costs the edge, beside the same call unrelayed, at a steady rate.

Run ``python -m bench.media_relay [--calls N] [--rate CPS]`` (or ``python -m bench
media_relay``). One proxy core, driven in-process with the call of
``bench.proxy.core_calls`` (INVITE with SDP; 100, 180, 200 with SDP; ACK and BYE
along the Record-Route; 200), its ``Media`` actions carried out by the edge's own
runner (``services/edge/runtime/media.py``) against a local user-space rtpengine
(``deploy/rtpengine.py``), calls started at ``--rate`` per second on one event
loop. The same calls under the policy ``never`` (no media work at all) are the
unrelayed figure, run in the same process first. Printed: this process's CPU
(user + system) per call for each, the difference and the ratio, and the
sessions left on rtpengine (must be 0). Not counted: the SIP sockets and the
kernel's part of SIP (the same for both), rtpengine's own CPU (the media host's).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.proxy.core_calls import (
    CALLER,
    EDGE,
    EDGE_PORT,
    GATEWAY,
    LISTENER,
    Table,
    caller_request,
    gateway_answer,
    sent_to,
)
from bench.rtpengine import ANSWER_SDP, OFFER_SDP
from deploy.rtpengine import running_rtpengine
from services.edge import metrics
from services.edge.proxy.actions import Action, Media
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import MediaSettings, Policy
from services.edge.proxy.routes import NumberRouter
from services.edge.runtime.media import MediaRunner
from shared.rtpengine.client import RtpengineClient
from shared.rtpengine.instances import Instance
from shared.sip.message import Request, parse_message

WARM_UP = 200
PORTS = 16000
"""rtpengine's media ports: four per call, not reused within a short run."""


class RelayDriver:
    """Plays caller and gateway around one `Proxy` whose `Media` actions go to rtpengine."""

    def __init__(self, policy: Policy, runner: MediaRunner) -> None:
        interfaces = Interfaces([Interface("udp", EDGE, EDGE_PORT, EDGE_PORT)])
        self.proxy = Proxy(
            interfaces,
            NumberRouter(Table()),
            ProxyTimers(fr=2.0, fr_inv=10.0),
            call_events=CallEvents("bench"),
            media=MediaSettings(policy),
        )
        self.runner = runner
        self.loop = asyncio.get_running_loop()

    async def _receive(self, data: bytes) -> list[Action]:
        """`data` into the proxy (from the caller or the gateway: only replies differ), its
        `Media` actions carried out as the edge's driver does, every other action kept."""
        source = GATEWAY if data.startswith(b"SIP/2.0") else CALLER
        pending = self.proxy.receive(data, source, LISTENER, self.loop.time())
        kept: list[Action] = []
        while pending:
            action = pending.pop(0)
            if not isinstance(action, Media):
                kept.append(action)
                continue
            sdp = await self.runner.run(action)
            if action.ticket:
                pending += self.proxy.media_done(action.ticket, sdp, self.loop.time())
        return kept

    async def call(self, n: int) -> None:
        uri = f"sip:1407555{n % 10000:04d}@{EDGE}:{EDGE_PORT}"
        out = await self._receive(caller_request("INVITE", n, uri, 1, sdp=OFFER_SDP))
        invite = parse_message(sent_to(out, GATEWAY))
        assert isinstance(invite, Request)
        await self._receive(gateway_answer(invite, 100, "Trying"))
        await self._receive(gateway_answer(invite, 180, "Ringing"))
        answered = await self._receive(gateway_answer(invite, 200, "OK", sdp=ANSWER_SDP))
        ok = parse_message(sent_to(answered, CALLER))
        routes = "".join(f"Route: {rr}\r\n" for rr in reversed(ok.headers("record-route")))
        gateway_uri, tag = f"sip:gw@{EDGE}:15071", ";tag=gw1"
        await self._receive(caller_request("ACK", n, gateway_uri, 1, extra=routes, to_tag=tag))
        bye = caller_request("BYE", n, gateway_uri, 2, extra=routes, to_tag=tag)
        forwarded = parse_message(sent_to(await self._receive(bye), GATEWAY))
        assert isinstance(forwarded, Request)
        await self._receive(gateway_answer(forwarded, 200, "OK"))

    def expire(self) -> None:
        """The transactions' timers, as the edge's one timer handle fires them."""
        self.proxy.expire(self.loop.time())


async def paced(driver: RelayDriver, first: int, calls: int, rate: float) -> float:
    """CPU seconds per call of `calls` calls started `rate` per second (timers fired too)."""
    loop = asyncio.get_running_loop()
    tasks = []
    cpu, start = time.process_time(), loop.time()
    for i in range(calls):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
            driver.expire()
        tasks.append(loop.create_task(driver.call(first + i)))
    await asyncio.gather(*tasks)
    return (time.process_time() - cpu) / calls


async def measure(instance: Instance, calls: int, rate: float) -> dict[str, float]:
    client = RtpengineClient((instance,), timeout=1.0, retries=2)
    runner = MediaRunner(client, {}, ping=1.0)  # a reply late under load: back within 1 s
    await runner.start()
    figures = {}
    runs: tuple[tuple[Policy, str], ...] = (("never", "unrelayed"), ("always", "relayed"))
    for policy, name in runs:
        driver = RelayDriver(policy, runner)
        first = 100_000 if policy == "always" else 0
        await paced(driver, first, WARM_UP, rate)
        figures[f"{name} CPU µs/call"] = await paced(driver, first + WARM_UP, calls, rate) * 1e6
    left = (await client.request(instance, "list", {})).body.get("calls")
    await runner.stop()
    unrelayed, relayed = figures["unrelayed CPU µs/call"], figures["relayed CPU µs/call"]
    figures["relay CPU µs/call"] = relayed - unrelayed
    figures["relayed / unrelayed"] = relayed / unrelayed
    figures["sessions left"] = float(len(left) if isinstance(left, list) else -1)
    figures["media failures"] = float(sum(metrics.MEDIA_FAILURES.values()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="calls started per second")
    parser.add_argument("--quick", action="store_true", help="300 calls")
    options = parser.parse_args()
    calls = 300 if options.quick else options.calls
    with (
        tempfile.TemporaryDirectory() as folder,
        running_rtpengine(Path(folder), ports=PORTS) as daemon,
    ):
        figures = asyncio.run(measure(daemon.instance, calls, options.rate))
    print(f"{calls} calls each way at {options.rate:.0f} calls/s (after {WARM_UP} to warm up)")
    print(f"{'figure':<24}{'value':>12}")
    for name, value in figures.items():
        print(f"{name:<24}{value:>12.2f}")
    if figures["sessions left"] != 0:
        raise SystemExit("rtpengine still holds sessions after every call ended")
    if figures["media failures"]:
        raise SystemExit("some calls were not relayed: the relayed figure is not one")


if __name__ == "__main__":
    main()
