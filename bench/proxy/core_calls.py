"""The proxy core alone: CPU per call of the sans-IO `Proxy`, no sockets, no SIPp.

Why: the wire benchmark (`bench.proxy.run`) shares two cores with SIPp and
other people's tests, so a 5% change drowns in its noise; this one replays
the wire benchmark's call (INVITE, 100/180/200 from the gateway, ACK and
BYE along the Record-Route, 200 for the BYE) through one `Proxy` in-process,
with the clock stepped so every transaction also lives through its timers.
It measures exactly the code a worker runs per call, minus the event loop
and the kernel, and is what `--profile` profiles.

    .venv/bin/python -m bench.proxy.core_calls --calls 20000
    .venv/bin/python -m bench.proxy.core_calls --call-events off
    .venv/bin/python -m bench.proxy.core_calls --sha-extensions off
    .venv/bin/python -m bench.proxy.core_calls --profile | head -40
    .venv/bin/python -m bench.proxy.core_calls --calls 2000 --objects
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections.abc import Sequence

from services.edge.proxy.actions import Action, Send
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.keyed_hmac import use_sha_extensions
from shared.routing_table.cache import IndexRoutes
from shared.routing_table.model import Gateway, Rule
from shared.sip.message import Request, parse_message
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination

EDGE = "127.0.0.1"
EDGE_PORT = 15062
CALLER = Destination("udp", EDGE, 15080)
GATEWAY = Destination("udp", EDGE, 15071)
LISTENER = Listener("udp", EDGE, EDGE_PORT)
CALLS_PER_SECOND = 1000


class Table(IndexRoutes):
    """The wire benchmark's route for 1407…: gateway 1, then gateway 2."""

    def __init__(self, gateway_ports: tuple[int, int] = (15071, 15072)) -> None:
        super().__init__()
        first, second = gateway_ports
        self.index.put("gateway", "1", Gateway(address=f"sip:{EDGE}:{first}"))
        self.index.put("gateway", "2", Gateway(address=f"sip:{EDGE}:{second}"))
        self.index.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))


def caller_request(
    method: str,
    n: int,
    uri: str,
    cseq: int,
    *,
    extra: str = "",
    to_tag: str = "",
    sdp: str = "",
    port: int = 15080,
) -> bytes:
    """The benchmark caller's request (`sdp`: its body, as `application/sdp`; `port`: the
    caller's own)."""
    body = "Content-Length: 0\r\n\r\n"
    if sdp:
        body = f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {EDGE}:{port};branch=z9hG4bK-{n}-{cseq}-{method}\r\n"
        f"{extra}"
        f"From: <sip:bench@{EDGE}:{port}>;tag={n}c\r\n"
        f"To: <sip:1407555{n % 10000:04d}@{EDGE}:{EDGE_PORT}>{to_tag}\r\n"
        f"Call-ID: {n}-bench@{EDGE}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:bench@{EDGE}:{port}>\r\n"
        "Max-Forwards: 70\r\n"
        f"{body}"
    ).encode()


def gateway_answer(
    request: Request, status: int, reason: str, sdp: str = "", port: int = 15071
) -> bytes:
    """What the SIPp gateway sends: Vias, Record-Route, From, To (tagged), Call-ID, CSeq
    (`sdp`: its body; `port`: the gateway's own, in its Contact)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {via}" for via in request.headers("via")]
    lines += [f"Record-Route: {rr}" for rr in request.headers("record-route")]
    to = request.header("to") or ""
    lines += [
        f"From: {request.header('from')}",
        f"To: {to if status == 100 or ';tag=' in to else to + ';tag=gw1'}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.header('cseq')}",
        f"Contact: <sip:gw@{EDGE}:{port}>",
        *(("Content-Type: application/sdp",) if sdp else ()),
        f"Content-Length: {len(sdp)}",
        "",
        sdp,
    ]
    return "\r\n".join(lines).encode()


def sent_to(actions: list[Action], destination: Destination) -> bytes:
    for action in actions:
        if isinstance(action, Send) and action.destination == destination:
            return action.data
    raise AssertionError(f"nothing sent to {destination}")


class CallDriver:
    """Plays caller and gateway around one `Proxy`, one call at a time, clock stepped per call."""

    def __init__(self, *, call_events: bool = True) -> None:
        """`call_events`: as the edge runs by default (`CALLMESH_CALL_EVENTS`), or without."""
        interfaces = Interfaces([Interface("udp", EDGE, EDGE_PORT, EDGE_PORT)])
        events = CallEvents("bench") if call_events else None
        timers = ProxyTimers(fr=2.0, fr_inv=10.0)
        self.proxy = Proxy(interfaces, NumberRouter(Table()), timers, call_events=events)
        self.now = 0.0
        self.proxy_seconds = 0.0
        """Time spent inside the proxy only (the driver's message building left out)."""

    def _receive(self, data: bytes, source: Destination) -> list[Action]:
        start = time.process_time()
        actions = self.proxy.receive(data, source, LISTENER, self.now)
        deadline = self.proxy.next_deadline()
        if deadline is not None and deadline <= self.now:
            actions += self.proxy.expire(self.now)
        self.proxy_seconds += time.process_time() - start
        return actions

    def call(self, n: int) -> None:
        self.now += 1.0 / CALLS_PER_SECOND
        uri = f"sip:1407555{n % 10000:04d}@{EDGE}:{EDGE_PORT}"
        out = self._receive(caller_request("INVITE", n, uri, 1), CALLER)
        invite = parse_message(sent_to(out, GATEWAY))
        assert isinstance(invite, Request)
        self._receive(gateway_answer(invite, 100, "Trying"), GATEWAY)
        self._receive(gateway_answer(invite, 180, "Ringing"), GATEWAY)
        ok = sent_to(self._receive(gateway_answer(invite, 200, "OK"), GATEWAY), CALLER)
        answer = parse_message(ok)
        routes = "".join(f"Route: {rr}\r\n" for rr in reversed(answer.headers("record-route")))
        gateway_uri = f"sip:gw@{EDGE}:15071"
        tag = ";tag=gw1"
        ack = caller_request("ACK", n, gateway_uri, 1, extra=routes, to_tag=tag)
        self._receive(ack, CALLER)
        out = self._receive(
            caller_request("BYE", n, gateway_uri, 2, extra=routes, to_tag=tag), CALLER
        )
        bye = parse_message(sent_to(out, GATEWAY))
        assert isinstance(bye, Request)
        self._receive(gateway_answer(bye, 200, "OK"), GATEWAY)


def run(calls: int, *, call_events: bool = True) -> float:
    """Seconds per call spent in the proxy core (receive, next_deadline, expire)."""
    driver = CallDriver(call_events=call_events)
    for n in range(200):
        driver.call(n)  # warm the memos
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1_000)
    driver.proxy_seconds = 0.0
    for n in range(200, 200 + calls):
        driver.call(n)
    return driver.proxy_seconds / calls


def tracked_per_call(calls: int) -> float:
    """Objects the cyclic GC tracks, per call, that the proxy still holds after `calls` calls.

    The clock moves 1 ms per call, so up to 5,000 calls every finished
    transaction is still lingering (Timers D, J, K, L, M): this is what each
    call costs the collector while its transactions absorb retransmissions.
    """
    driver = CallDriver()
    for n in range(200):
        driver.call(n)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(200, 200 + calls):
        driver.call(n)
    gc.collect()
    return (len(gc.get_objects()) - before) / calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.core_calls")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    parser.add_argument(
        "--call-events", choices=("on", "off"), default="on", help="the edge.call.… events"
    )
    parser.add_argument(
        "--sha-extensions",
        choices=("on", "off"),
        default="on",
        help="off: the token HMAC's portable SHA-256 where the CPU has the SHA extensions",
    )
    parser.add_argument(
        "--objects", action="store_true", help="GC-tracked objects held per call, not time"
    )
    args = parser.parse_args(argv)
    sha256 = use_sha_extensions(args.sha_extensions == "on")
    if args.objects:
        print(f"proxy core: {tracked_per_call(args.calls):.1f} tracked objects held per call")
        return 0
    events = args.call_events == "on"
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, args.calls, call_events=events)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        return 0
    results = sorted(run(args.calls, call_events=events) for _ in range(args.repeat))
    median = results[len(results) // 2]
    print(
        f"proxy core, call events {args.call_events}: {median * 1e6:.1f} µs per call"
        f" (median of {args.repeat}; token HMAC on {sha256})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
