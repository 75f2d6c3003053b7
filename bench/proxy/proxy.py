"""The proxy under test: how the runner starts, reaches and stops any proxy.

A proxy plugs in by saying how to launch it with a given routing table; the
runner owns its life cycle so every proxy is started, probed, measured and
stopped the same way.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

from bench.proxy.errors import BenchError
from bench.proxy.processes import log_tail, spawn, stop_session
from bench.proxy.routing import LOOPBACK, RoutingTable


@dataclass(frozen=True, slots=True)
class Launch:
    """A ready-to-run proxy: its argv and the environment it needs on top of ours."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    """Polled until it answers 200 once the proxy answers SIP (a Callmesh edge's ``/readyz``:
    ready once every worker serves SIP), None: SIP alone says ready.  Without it the
    runner offered calls as soon as the first worker answered OPTIONS, and the early
    messages for the others were handled where they came (`handed_on_unreachable`)."""


class ProxyUnderTest(Protocol):
    """A SIP proxy the benchmark can drive: UDP on ``127.0.0.1:port``."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int: ...

    def launch(self, table: RoutingTable, workdir: Path) -> Launch:
        """Provision ``table`` (files in ``workdir``) and say how to start the proxy.

        The proxy must route with ``table`` from its first call on.
        """
        ...


def _options_probe(local_port: int, proxy_port: int) -> bytes:
    return (
        f"OPTIONS sip:{LOOPBACK}:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK-bench-{time.monotonic_ns()}\r\n"
        f"From: <sip:probe@{LOOPBACK}:{local_port}>;tag=probe\r\n"
        f"To: <sip:{LOOPBACK}:{proxy_port}>\r\n"
        f"Call-ID: probe-{local_port}@{LOOPBACK}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _wait_answering(
    process: subprocess.Popen[bytes], name: str, port: int, log: Path, timeout: float
) -> None:
    """Any SIP answer to OPTIONS means the proxy reads its socket and routes."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        probe.settimeout(0.2)
        request = _options_probe(probe.getsockname()[1], port)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(
                    f"{name} exited with {process.returncode} while starting; "
                    f"log {log}:\n{log_tail(log)}"
                )
            probe.sendto(request, (LOOPBACK, port))
            try:
                if probe.recv(65535).startswith(b"SIP/2.0 "):
                    return
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise BenchError(f"{name} did not answer OPTIONS on port {port} within {timeout:g} s")


def _wait_ready(
    process: subprocess.Popen[bytes], name: str, url: str, log: Path, deadline: float
) -> None:
    """Until `url` answers 200 (a 503 or no answer yet: not ready), or the deadline."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"{name} exited with {process.returncode} while starting; "
                f"log {log}:\n{log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status == HTTPStatus.OK:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} answered SIP but {url} did not answer 200 in time")


@contextmanager
def running_proxy(
    proxy: ProxyUnderTest, table: RoutingTable, workdir: Path, ready_timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``proxy`` in its own session, wait until it answers SIP, stop it on exit."""
    launch = proxy.launch(table, workdir)
    log = workdir / f"{proxy.name}.log"
    process = spawn(launch.argv, log, workdir, launch.env)
    try:
        deadline = time.monotonic() + ready_timeout
        _wait_answering(process, proxy.name, proxy.port, log, ready_timeout)
        if launch.ready_url is not None:
            _wait_ready(process, proxy.name, launch.ready_url, log, deadline)
        yield process
    finally:
        stop_session(process)
