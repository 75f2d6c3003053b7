"""What relaying a call's media costs a real edge on the wire: CPU per call relayed beside
unrelayed, SIPp at 500 cps, and rtpengine's own CPU per relayed call.

Run ``python -m bench media_relay_wire [-- --rates 150,500 --duration 10 --repeat 5]`` from
the repository root.  The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways, the seed
table in Redis, SIPp dialling through the edge along the route set), its calls carrying SDP
(an offer in the INVITE, the answer in the gateway's 200), beside one local user-space
rtpengine started as the tests start it (``deploy/rtpengine.py``), with one edge process
(``python -m services.edge``, two workers) per set-up, both told of that rtpengine, started
at once and measured in turn, alternating (``bench/proxy/setups.py``):

- ``unrelayed``: the gateways set ``media_relay: never`` (the SDP goes through untouched);
- ``relayed``: ``media_relay: always``: an ``offer`` on the INVITE, an ``answer`` on the 200,
  a ``delete`` on the BYE, and the SDPs rewritten.

Printed, per rate (``--rates``, each in turn): per set-up the median over ``--repeat`` runs
of the edge's CPU µs per call (kernel part apart, net of its idle CPU) and failed calls; its
CPU over ``unrelayed``'s as the median of each repeat's ratio with the lowest and highest;
rtpengine's CPU µs per call over the set-up's runs (its process; under ``unrelayed`` only the
edges' pings); the calls the relayed edge counted as relayed and its failed rtpengine
commands (``/metrics``); the sessions rtpengine still holds after the rate's runs (0 within
30 s when no call failed: a call SIPp gave up on may never send its BYE, and its session then
waits for the accounting service's timeout, not running here, or rtpengine's own).  No RTP
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
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.cpu import tree_cpu_times
from bench.proxy.errors import BenchError
from bench.proxy.results import RunResult
from bench.proxy.routing import LOOPBACK, seed_table
from bench.proxy.run import BenchConfig, int_list, raise_open_files_limit, work_directory
from bench.proxy.setups import Row, in_turn, measured_run, row_of, running_edges
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
LIST_LIMIT = 1_000_000
"""The call-IDs ``list`` may give (rtpengine's default is 32)."""
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


def edges_of(daemon: Daemon) -> dict[str, CallmeshEdge]:
    """Every set-up's edge, by set-up name, each told of `daemon`."""
    return {
        setup: CallmeshEdge(
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
        for setup, policy in SETUPS.items()
    }


@dataclass(frozen=True, slots=True)
class Step:
    """One offered rate's figures."""

    rate: int
    rows: list[Row]
    rtpengine_us: dict[str, float]
    """rtpengine's CPU µs per call offered, median over each set-up's runs."""
    offered: int
    """Calls offered to the relayed edge."""
    relayed: int
    """Calls whose offer it had rtpengine take (`callmesh_edge_media_relayed_calls_total`)."""
    media_failures: int
    """Its rtpengine commands that failed (`callmesh_edge_media_failures_total`)."""
    sessions_left: int


@dataclass(frozen=True, slots=True)
class Lab:
    """What every rate's runs share: the started edges and rtpengine, the SIPp set-up."""

    config: BenchConfig
    edges: dict[str, tuple[CallmeshEdge, int]]
    daemon: Daemon
    workdir: Path
    numbers: Path
    repeat: int

    def step(self, rate: int) -> Step:
        """`repeat` runs of each set-up at `rate`, in turn; then the sessions left."""
        plan = self.config.plan(rate)
        setups = list(SETUPS)
        runs: dict[str, list[tuple[RunResult, float]]] = {setup: [] for setup in setups}
        engine: dict[str, list[float]] = {setup: [] for setup in setups}
        counted = metrics(self.edges["relayed"][0])
        for n in range(self.repeat):
            for setup in in_turn(setups, n):
                edge, pid = self.edges[setup]
                before = sum(tree_cpu_times(self.daemon.pid))
                run = measured_run(
                    pid, edge.port, plan, config=self.config, workdir=self.workdir,
                    numbers=self.numbers, tag=f"{setup}-{rate}-{n}",
                )  # fmt: skip # one run's parts
                runs[setup].append(run)
                spent = sum(tree_cpu_times(self.daemon.pid)) - before
                engine[setup].append(spent / max(run[0].attempted, 1) * 1e6)
        left = sessions(self.daemon)
        after = metrics(self.edges["relayed"][0])
        unrelayed = [r.cpu_ms_per_call for r, _ in runs["unrelayed"]]

        def added(name: str) -> int:
            return int(after.get(name, 0) - counted.get(name, 0))

        return Step(
            rate,
            [row_of(setup, runs[setup], unrelayed) for setup in setups],
            {setup: statistics.median(engine[setup]) for setup in setups},
            sum(r.attempted for r, _ in runs["relayed"]),
            added("callmesh_edge_media_relayed_calls_total"),
            added("callmesh_edge_media_failures_total"),
            left,
        )


def bench(rates: tuple[int, ...], duration: float, repeat: int, workdir: Path) -> list[Step]:
    gateways = (free_port(), free_port())
    caller, gateway = sdp_scenarios(workdir)
    config = BenchConfig(
        rates=rates,
        duration_s=duration,
        gateway_ports=gateways,
        caller_scenario=caller,
        gateway_scenario=gateway,
    )
    table = seed_table(*gateways)
    numbers = workdir / "numbers.csv"
    write_numbers(numbers, config.number_prefix)
    with (
        running_rtpengine(workdir, ports=PORTS) as daemon,
        running_gateways(table, workdir, config.recv_timeout_ms, scenario=gateway),
        running_edges(edges_of(daemon), table, workdir) as edges,
    ):
        lab = Lab(config, edges, daemon, workdir, numbers, repeat)
        return [lab.step(rate) for rate in rates]


def metrics(edge: CallmeshEdge) -> dict[str, float]:
    """The edge's counters by name, its labelled series summed (its HTTP API may come up a
    little after its SIP port answers: up to 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            url = f"http://{LOOPBACK}:{edge.http_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as page:
                text = page.read().decode()
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
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

    async def count() -> int:
        client = RtpengineClient((daemon.instance,), timeout=2.0, retries=2)
        await client.start()
        try:
            listed = await client.request(daemon.instance, "list", {"limit": LIST_LIMIT})
            calls = listed.body.get("calls")
        finally:
            client.close()
        return len(calls) if isinstance(calls, list) else -1

    deadline = time.monotonic() + SETTLE
    while (left := asyncio.run(count())) and time.monotonic() < deadline:
        time.sleep(1.0)
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media_relay_wire")
    parser.add_argument(
        "--rates", type=int_list, default=(500,), help="calls offered per second, each in turn"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each set-up per rate")
    parser.add_argument("--workdir", type=Path, help="keep the edges', SIPp's, rtpengine's logs")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.duration <= 0:
        parser.error("--repeat ≥ 1, --duration > 0")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            steps = bench(args.rates, args.duration, args.repeat, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"each rate offered for {args.duration:g} s a run, medians of {args.repeat} runs each")
    print(
        f"{'cps':>5} {'setup':<10}{'edge CPU µs/call':>18}{'kernel':>9}{'idle':>7}"
        f"{'failed %':>10}{'÷ unrelayed':>13}{'lowest':>8}{'highest':>9}"
        f"{'rtpengine µs/call':>19}"
    )
    for step in steps:
        for row in step.rows:
            print(
                f"{step.rate:>5} {row.setup:<10}{row.cpu_us:>18.0f}{row.kernel_us:>9.0f}"
                f"{row.idle_us:>7.0f}{row.failed_pct:>10.2f}"
                f"{statistics.median(row.ratios):>13.3f}{min(row.ratios):>8.3f}"
                f"{max(row.ratios):>9.3f}{step.rtpengine_us[row.setup]:>19.0f}"
            )
    print("÷ unrelayed: the median of each repeat's ratio; lowest, highest: of those ratios")
    for step in steps:
        print(
            f"{step.rate} cps, relayed edge: {step.relayed} of {step.offered} calls relayed, "
            f"{step.media_failures} rtpengine commands failed; "
            f"rtpengine sessions left after the rate's runs: {step.sessions_left}"
        )
    print(f"load average at the end: {load}")
    leaked = [
        step.rate
        for step in steps
        if step.sessions_left and not any(row.failed_pct for row in step.rows)
    ]
    if leaked:
        print(
            f"bench: sessions left after calls that all ended well at {leaked} cps", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
