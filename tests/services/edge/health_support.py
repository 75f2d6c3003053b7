"""What the edge's health and dispatcher wire tests add to ``support``: a health service
process probing fast, the edge's view read from its ``/metrics``, and call batches.

The health service runs as ``python -m services.health`` beside the edge and the
routing service (same namespace), so the whole path is the production one:
OPTIONS probes, states in Redis, ``health.…`` events, the edge's health feed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.proxy.sipp_stats import CallCounts, parse_stat_file
from deploy.labs.ports import free_port
from deploy.processes import stop_process
from services.health.settings import HealthSettings
from tests.services.edge.support import (
    LOOPBACK,
    REPO,
    Edge,
    Sipp,
    sipp,
    wait_bound,
)

PROBING = HealthSettings(
    probe_interval=0.5, probe_timeout=0.3, failures_to_down=2, successes_to_up=1, lease_ttl=1.5
)
DOWN_WITHIN = PROBING.probe_interval * PROBING.failures_to_down + 1.0
SETTLE = 15.0
"""Generous bound for what has no stated deadline (an event crossing a loaded machine)."""

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Health:
    """A running ``python -m services.health`` and its HTTP API."""

    process: subprocess.Popen[bytes]
    http_port: int
    log: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://{LOOPBACK}:{self.http_port}", timeout=10.0)

    def post(self, path: str) -> dict[str, Any]:
        with self.http() as client:
            reply = client.post(path)
            reply.raise_for_status()
            body: dict[str, Any] = reply.json()
            return body

    def put_set(self, set_id: str, body: Mapping[str, object]) -> None:
        with self.http() as client:
            client.put(f"/v1/dispatcher/sets/{set_id}", json=body).raise_for_status()

    def target(self, target_id: str) -> dict[str, Any]:
        with self.http() as client:
            reply = client.get(f"/v1/targets/{quote(target_id, safe=':')}")
            reply.raise_for_status()
            body: dict[str, Any] = reply.json()
            return body

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def running_health(edge: Edge) -> Iterator[Health]:
    """The health service on the edge's namespace, probing with :data:`PROBING`."""
    port = free_port()
    log = edge.workdir / f"health-{port}.log"
    env = dict(
        edge.env,
        CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{port}",
        CALLMESH_INSTANCE=f"health-{port}",
        CALLMESH_HEALTH_PROBE_INTERVAL=str(PROBING.probe_interval),
        CALLMESH_HEALTH_PROBE_TIMEOUT=str(PROBING.probe_timeout),
        CALLMESH_HEALTH_FAILURES_TO_DOWN=str(PROBING.failures_to_down),
        CALLMESH_HEALTH_SUCCESSES_TO_UP=str(PROBING.successes_to_up),
        CALLMESH_HEALTH_LEASE_TTL=str(PROBING.lease_ttl),
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.health"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=output,
        )
    health = Health(process, port, log)
    try:
        wait_until(lambda: _ready(health), SETTLE, lambda: f"health not ready: {_tail(log)}")
        yield health
    finally:
        health.stop()


def _ready(health: Health) -> bool:
    try:
        with health.http() as client:
            return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def wait_until(check: Callable[[], bool], within: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        time.sleep(0.05)


def metrics(edge: Edge) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The edge's ``/metrics`` samples keyed by (name, labels)."""
    with edge.http() as client:
        text = client.get("/metrics").text
    samples = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        name, labels, value = found.groups()
        samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def metric(edge: Edge, name: str, **labels: str) -> float:
    """One sample, 0 when the edge has not created it yet."""
    return metrics(edge).get((name, frozenset(labels.items())), 0.0)


def edge_state(edge: Edge, target: str) -> str | None:
    """The health state the edge routes ``target`` with (from its ``/metrics``)."""
    for (name, labels), value in metrics(edge).items():
        found = dict(labels)
        if name == "callmesh_edge_target_state" and found.get("target") == target and value:
            return found["state"]
    return None


def wait_edge_state(edge: Edge, target: str, state: str) -> None:
    wait_until(
        lambda: edge_state(edge, target) == state,
        SETTLE,
        lambda: f"edge sees {target} {edge_state(edge, target)}, not {state}: {edge.log()}",
    )


def box(workdir: Path, port: int) -> Sipp:
    """A SIPp answering calls and OPTIONS (``-aa``); every probe is a "call" to SIPp, hence -m.

    ``-deadcall_wait 0``: SIPp otherwise absorbs a new call reusing an ended
    call's Call-ID for 33 s (the Call-ID hashing test reuses them on purpose).
    """
    started = sipp(workdir, "gateway", port, calls=1_000_000, args=("-deadcall_wait", "0"))
    wait_bound(port)
    return started


@dataclass
class Calls:
    """A SIPp caller placing a batch of calls through the edge."""

    caller: Sipp
    stats: Path

    def outcome(self, within: float = 120.0) -> CallCounts:
        """Waits for the batch to end; its counts (successful, failed)."""
        self.caller.wait(within)
        return parse_stat_file(self.stats)


def start_calls(
    edge: Edge,
    workdir: Path,
    number: str,
    count: int,
    *,
    rate: int = 20,
    args: tuple[str, ...] = (),
) -> Calls:
    """``count`` calls to ``number`` through the edge at ``rate`` per second."""
    port = free_port()
    stats = workdir / f"calls-{port}.csv"
    caller = sipp(
        workdir,
        "caller",
        port,
        remote=edge.sip_port,
        calls=count,
        args=(
            "-s",
            number,
            "-set",
            "hold",
            "0",
            "-r",
            str(rate),
            "-trace_stat",
            "-stf",
            str(stats),
            *args,
        ),
    )
    return Calls(caller, stats)


def place_calls(
    edge: Edge,
    workdir: Path,
    number: str,
    count: int,
    *,
    rate: int = 20,
    args: tuple[str, ...] = (),
) -> CallCounts:
    return start_calls(edge, workdir, number, count, rate=rate, args=args).outcome()
