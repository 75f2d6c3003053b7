"""The proxy benchmark harness, end to end against Kamailio on the wire.

Not a speed test: it proves the harness offers calls, that Kamailio with the
generated drouting tables completes them (failing over when a gateway is
dead), and that the runner reports what it measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.proxy.all_in_one import AllInOne
from bench.proxy.kamailio import Kamailio
from bench.proxy.proxy import ProxyUnderTest, running_proxy
from bench.proxy.routing import LOOPBACK, Gateway, RoutingTable, Rule
from bench.proxy.sipp import CallPlan, run_caller, running_gateways, write_numbers
from bench.proxy.sipp_stats import CallCounts
from deploy.labs.ports import free_port

pytestmark = pytest.mark.wire

REPO_ROOT = Path(__file__).resolve().parents[2]

# Away from the runner's defaults so a benchmark on the same host cannot collide, and claimed
# like every port of the run (a fixed one could be handed to a process of the labs' run).
PROXY_PORT = free_port()
GATEWAY_PORTS = (free_port(), free_port())
CALLER_PORT = free_port()
DEAD_GATEWAY_PORT = free_port()


def test_quick_run_completes_every_call_through_kamailio(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.proxy.run",
            "--quick",
            "--proxy",
            "kamailio",
            "--kamailio-port",
            str(PROXY_PORT),
            "--gateway-ports",
            ",".join(map(str, GATEWAY_PORTS)),
            "--caller-port",
            str(CALLER_PORT),
            "--json",
            str(results),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    rows = [line.split() for line in completed.stdout.splitlines()[1:]]
    assert rows == [["kamailio", "50", "100", "0.000", rows[0][4], rows[0][5]]]
    assert 0.0 <= float(rows[0][5]) <= float(rows[0][4])
    (step,) = json.loads(results.read_text())["proxies"]["kamailio"]
    (run,) = step["runs"]
    assert (run["attempted"], run["successful"], run["unsuccessful"]) == (100, 100, 0)
    assert run["failure_reasons"] == {}
    assert step["failed_pct"] == 0.0
    assert run["cpu_seconds"] >= run["system_seconds"]


def five_calls_past_a_dead_gateway(proxy: ProxyUnderTest, tmp_path: Path) -> CallCounts:
    """Five calls through `proxy`, dialling a rule whose first gateway is down."""
    live = Gateway(2, LOOPBACK, GATEWAY_PORTS[1], "PSTN 2")
    table = RoutingTable(
        gateways=(Gateway(1, LOOPBACK, DEAD_GATEWAY_PORT, "PSTN 1 (down)"), live),
        rules=(Rule(1, 0, "1407", 0, (1, 2)),),
    )
    numbers = tmp_path / "numbers.csv"
    write_numbers(numbers, "1407555")
    plan = CallPlan(rate=5, calls=5, hold_min_ms=0, hold_max_ms=0, recv_timeout_ms=10_000)
    with (
        running_gateways(RoutingTable(gateways=(live,), rules=()), tmp_path, 10_000),
        running_proxy(proxy, table, tmp_path),
    ):
        return run_caller(
            plan,
            proxy_port=proxy.port,
            caller_port=CALLER_PORT,
            numbers=numbers,
            workdir=tmp_path,
            tag=proxy.name,
        )


def test_kamailio_fails_over_to_the_next_gateway(tmp_path: Path) -> None:
    kamailio = Kamailio(port=PROXY_PORT, fr_timer_ms=500, fr_inv_timer_ms=2000)
    counts = five_calls_past_a_dead_gateway(kamailio, tmp_path)
    assert (counts.attempted, counts.successful, counts.failed) == (5, 5, 0)


def test_the_all_in_one_routes_its_first_calls_from_the_snapshot_it_was_given(
    tmp_path: Path,
) -> None:
    """`callmesh-aio` (the all-in-one row): one process, no Redis or RabbitMQ (were
    they named by the caller's environment), its table loaded from the embedded store's
    snapshot written before it started; the calls fail over past a dead gateway."""
    all_in_one = AllInOne(port=free_port(), http_port=free_port(), fr_timeout_s=0.5)
    counts = five_calls_past_a_dead_gateway(all_in_one, tmp_path)
    assert (counts.attempted, counts.successful, counts.failed) == (5, 5, 0)
