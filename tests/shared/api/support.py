"""Real Callmesh processes for the API tests: started with an environment, their log kept."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.labs.ports import free_port
from tests.services.edge.support import LOOPBACK, REPO


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    http_port: int
    sip_port: int
    log: Path

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(
            base_url=f"http://{LOOPBACK}:{self.http_port}", headers=headers, timeout=30.0
        )

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def start(name: str, module: str, env: Mapping[str, str], workdir: Path) -> Running:
    """``python -m module`` with ``env`` plus its own HTTP and SIP ports; stdout to a log."""
    http_port, sip_port = free_port(), free_port()
    env = dict(
        env,
        CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http_port}",
        CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{sip_port}",
        CALLMESH_INSTANCE=f"sec-{name}",
    )
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Running(name, process, http_port, sip_port, log)


def wait_ready(running: Running, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert running.process.poll() is None, "\n".join(running.lines()[-20:])
        try:
            with running.http() as client:
                if client.get("/readyz").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{running.name} not ready: {running.lines()[-20:]}")


def stop(processes: Iterable[Running]) -> None:
    """SIGTERM to all, then wait for each (killed after 15 s)."""
    every = list(processes)
    for each in every:
        each.process.terminate()
    for each in every:
        try:
            each.process.wait(15)
        except subprocess.TimeoutExpired:
            each.process.kill()
            each.process.wait()
