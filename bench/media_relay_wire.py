"""What relaying a call's media costs a real edge on the wire: CPU per call relayed beside
unrelayed, SIPp at 500 cps, and rtpengine's own CPU per relayed call.

Run ``python -m bench media_relay_wire [-- --rate 500 --duration 10 --repeat 5]`` from the
repository root.  The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways, the seed
table in Redis, SIPp dialling through the edge along the route set), its calls carrying SDP
(an offer in the INVITE, the answer in the gateway's 200), beside one local user-space
rtpengine started as the tests start it (``deploy/rtpengine.py``), with one edge process
(``python -m services.edge``, two workers) per set-up, both told of that rtpengine, started
at once and measured in turn, alternating (``bench/proxy/setups.py``):

- ``unrelayed``: the gateways set ``media_relay: never`` (the SDP goes through untouched);
- ``relayed``: ``media_relay: always``: an ``offer`` on the INVITE, an ``answer`` on the 200,
  a ``delete`` on the BYE, and the SDPs rewritten.

Printed: per set-up the median over ``--repeat`` runs of the edge's CPU µs per call (kernel
part apart, net of its idle CPU) and failed calls; its CPU over ``unrelayed``'s as the median
of each repeat's ratio with the lowest and highest; rtpengine's CPU µs per call over the
set-up's runs (its process; under ``unrelayed`` only the edges' pings); the sessions
rtpengine still holds once every run is over (must be 0, within 30 s); the calls the
relayed edge counted as relayed and its failed rtpengine commands (``/metrics``).  No RTP
flows: this is the signalling side's cost of relaying, the media's is rtpengine's (its
kernel module's, in production).  The edges shed no load (``CALLMESH_OVERLOAD_LAG_MS=0``).
The machine is shared: compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.cpu import tree_cpu_times
from bench.proxy.errors import BenchError
from bench.proxy.proxy import running_proxy
from bench.proxy.results import RunResult
from bench.proxy.routing import LOOPBACK, RoutingTable, seed_table
from bench.proxy.run import BenchConfig, raise_open_files_limit, work_directory
from bench.proxy.setups import Row, in_turn, measured_run, row_of
from bench.proxy.sipp import CALLER_SCENARIO, GATEWAY_SCENARIO, running_gateways, write_numbers
from deploy.labs.ports import free_port
from deploy.rtpengine import Daemon, running_rtpengine
from shared.routing_table.model import MediaRelay
from shared.rtpengine.client import RtpengineClient

SETUPS: dict[str, MediaRelay] = {"unrelayed": "never", "relayed": "always"}
PORTS = 16000
"""rtpengine's media ports: four per call, freed by each call's delete."""
SETTLE = 30.0
"""Seconds the sessions left may take to go after the last run: more than the edge's INVITE
timeout (10 s) and its rtpengine retries, less than rtpengine's own 60 s without media."""
CALLER_MEDIA, GATEWAY_MEDIA = 6000, 6002
"""The media ports the SDPs name (nothing listens: no RTP is sent)."""


def with_sdp(scenario: str, first_line: str, media_port: int) -> str:
    """`scenario` (SIPp's XML) with an SDP body in the first message whose first line starts
    `first_line` (the caller's INVITE; the gateway's 200 for the INVITE, before the BYE's)."""
    head, *messages = scenario.split("<![CDATA[")
    for n, message in enumerate(messages):
        if message.lstrip().startswith(first_line):
            text, _, rest = message.partition("]]>")
            indent = text[: len(text) - len(text.lstrip())].rpartition("\n")[2]
            if text.count(f"\n{indent}Content-Length: 0\n") != 1:
                raise ValueError(f"the message {first_line!r} has no Content-Length: 0 line")
            sdp = (
                "v=0", "o=bench 1 1 IN IP4 [local_ip]", "s=-", "c=IN IP4 [local_ip]", "t=0 0",
                f"m=audio {media_port} RTP/AVP 8", "a=rtpmap:8 PCMA/8000",
            )  # fmt: skip # the SDP's lines
            body = "".join(f"\n{indent}{line}" for line in sdp)
            headers = f"\n{indent}Content-Type: application/sdp\n{indent}Content-Length: [len]\n"
            text = text.replace(f"\n{indent}Content-Length: 0\n", f"{headers}{body}\n", 1)
            messages[n] = f"{text}]]>{rest}"
            return "<![CDATA[".join([head, *messages])
    raise ValueError(f"no message starts {first_line!r}")


def sdp_scenarios(workdir: Path) -> tuple[Path, Path]:
    """The proxy benchmark's caller and gateway scenarios with SDP, written into `workdir`."""
    caller, gateway = workdir / "caller-sdp.xml", workdir / "gateway-sdp.xml"
    caller.write_text(with_sdp(CALLER_SCENARIO.read_text(), "INVITE ", CALLER_MEDIA))
    gateway.write_text(with_sdp(GATEWAY_SCENARIO.read_text(), "SIP/2.0 200 ", GATEWAY_MEDIA))
    return caller, gateway


@contextmanager
def running_edges(
    daemon: Daemon, table: RoutingTable, workdir: Path
) -> Iterator[dict[str, tuple[CallmeshEdge, int]]]:
    """Every set-up's edge, started together (their idle CPU is alike), by set-up name."""
    with ExitStack() as stack:
        edges = {}
        for setup, policy in SETUPS.items():
            edge = CallmeshEdge(
                port=free_port(),
                http_port=free_port(),
                namespace=f"bench-media-{setup}",  # each launch empties its namespace first
                media_relay=policy,
                env={
                    "CALLMESH_RTPENGINE": daemon.instance.name,
                    # CPU per call, not shedding, is measured (as in bench.capture_wire).
                    "CALLMESH_OVERLOAD_LAG_MS": "0",
                },
            )
            folder = workdir / setup
            folder.mkdir(exist_ok=True)
            process = stack.enter_context(running_proxy(edge, table, folder, ready_timeout=30))
            edges[setup] = (edge, process.pid)
        yield edges


@dataclass(frozen=True, slots=True)
class Figures:
    rows: list[Row]
    rtpengine_us: dict[str, float]
    """rtpengine's CPU µs per call offered, median over each set-up's runs."""
    sessions_left: int
    offered: int
    """Calls offered to the relayed edge."""
    relayed: int
    """Calls whose offer it had rtpengine take (`callmesh_edge_media_relayed_calls_total`)."""
    media_failures: int
    """Its rtpengine commands that failed (`callmesh_edge_media_failures_total`)."""


def bench(rate: int, duration: float, repeat: int, workdir: Path) -> Figures:
    gateways = (free_port(), free_port())
    caller, gateway = sdp_scenarios(workdir)
    config = BenchConfig(
        rates=(rate,),
        duration_s=duration,
        gateway_ports=gateways,
        caller_scenario=caller,
        gateway_scenario=gateway,
    )
    table = seed_table(*gateways)
    plan = config.plan(rate)
    numbers = workdir / "numbers.csv"
    write_numbers(numbers, config.number_prefix)
    setups = list(SETUPS)
    runs: dict[str, list[tuple[RunResult, float]]] = {setup: [] for setup in setups}
    engine: dict[str, list[float]] = {setup: [] for setup in setups}
    with (
        running_rtpengine(workdir, ports=PORTS) as daemon,
        running_gateways(table, workdir, config.recv_timeout_ms, scenario=gateway),
        running_edges(daemon, table, workdir) as edges,
    ):
        for n in range(repeat):
            for setup in in_turn(setups, n):
                edge, pid = edges[setup]
                before = sum(tree_cpu_times(daemon.pid))
                run = measured_run(
                    pid, edge.port, plan,
                    config=config, workdir=workdir, numbers=numbers, tag=f"{setup}-{n}",
                )  # fmt: skip # one run's parts
                runs[setup].append(run)
                calls = max(run[0].attempted, 1)
                engine[setup].append((sum(tree_cpu_times(daemon.pid)) - before) / calls * 1e6)
        left = sessions(daemon)
        counted = metrics(edges["relayed"][0])
    unrelayed = [r.cpu_ms_per_call for r, _ in runs["unrelayed"]]
    return Figures(
        [row_of(setup, runs[setup], unrelayed) for setup in setups],
        {setup: statistics.median(engine[setup]) for setup in setups},
        left,
        sum(r.attempted for r, _ in runs["relayed"]),
        int(counted.get("callmesh_edge_media_relayed_calls_total", 0)),
        int(counted.get("callmesh_edge_media_failures_total", 0)),
    )


def metrics(edge: CallmeshEdge) -> dict[str, float]:
    """The edge's counters by name, its labelled series summed."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{edge.http_port}/metrics", timeout=10) as page:
        text = page.read().decode()
    counted: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name = series.partition("{")[0]
            counted[name] = counted.get(name, 0.0) + float(value)
    return counted


def sessions(daemon: Daemon) -> int:
    """The calls rtpengine holds (its ``list``), once none is left or `SETTLE` s have passed:
    calls that failed at the caller may still be ending at the edge (its INVITE transaction
    up to 10 s, then the ``delete``)."""

    async def listed() -> int:
        client = RtpengineClient((daemon.instance,), timeout=2.0, retries=2)
        await client.start()
        try:
            calls = (await client.request(daemon.instance, "list", {})).body.get("calls")
        finally:
            client.close()
        return len(calls) if isinstance(calls, list) else -1

    deadline = time.monotonic() + SETTLE
    while (left := asyncio.run(listed())) and time.monotonic() < deadline:
        time.sleep(1.0)
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media_relay_wire")
    parser.add_argument("--rate", type=int, default=500, help="calls offered per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each set-up")
    parser.add_argument("--workdir", type=Path, help="keep the edges', SIPp's, rtpengine's logs")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rate < 1 or args.duration <= 0:
        parser.error("--repeat and --rate ≥ 1, --duration > 0")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            figures = bench(args.rate, args.duration, args.repeat, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{args.rate} cps offered for {args.duration:g} s, medians of {args.repeat} runs each")
    print(
        f"{'setup':<10}{'edge CPU µs/call':>18}{'kernel':>9}{'idle':>7}{'failed %':>10}"
        f"{'÷ unrelayed':>13}{'lowest':>8}{'highest':>9}{'rtpengine µs/call':>19}"
    )
    for row in figures.rows:
        print(
            f"{row.setup:<10}{row.cpu_us:>18.0f}{row.kernel_us:>9.0f}{row.idle_us:>7.0f}"
            f"{row.failed_pct:>10.2f}{statistics.median(row.ratios):>13.3f}"
            f"{min(row.ratios):>8.3f}{max(row.ratios):>9.3f}"
            f"{figures.rtpengine_us[row.setup]:>19.0f}"
        )
    print("÷ unrelayed: the median of each repeat's ratio; lowest, highest: of those ratios")
    print(
        f"relayed edge: {figures.relayed} of {figures.offered} calls relayed, "
        f"{figures.media_failures} rtpengine commands failed; "
        f"rtpengine sessions left after every run: {figures.sessions_left}"
    )
    print(f"load average at the end: {load}")
    if figures.sessions_left:
        print("bench: rtpengine still holds sessions after every call ended", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
