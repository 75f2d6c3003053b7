"""Two edges, a registrar and the routing service as real processes on one fresh namespace.

Edge A trusts no loopback source (`CALLMESH_TRUSTED_NETWORKS` is a
documentation network), so the phones and subscribers of the tests, all on
127.0.0.1, are challenged there; edge B keeps the default (loopback trusted)
and plays the edge a carrier's call comes in at.  The registrar accepts
registrations from one second up, so expiry can be watched.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.labs.ports import free_port
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.registrar import REGISTER_QUEUE, REGISTRAR_EVENTS
from tests.conftest import RABBITMQ_URL
from tests.services.edge.support import (
    LOOPBACK,
    REPO,
    Edge,
    delete_queues,
    running_edge,
    stop_all_sipp,
)

DOMAIN = "example.com"
PASSWORD = "s3cret"


@dataclass
class Cluster:
    a: Edge
    b: Edge
    registrar_port: int
    registrar: subprocess.Popen[bytes]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://{LOOPBACK}:{self.registrar_port}", timeout=10.0)

    def subscriber(self, user: str, password: str = PASSWORD) -> None:
        with self.api() as api:
            body = {"domain": DOMAIN, "password": password}
            api.put(f"/v1/subscribers/{user}@{DOMAIN}", json=body).raise_for_status()

    def bindings(self, user: str) -> list[dict[str, object]]:
        with self.api() as api:
            reply = api.get(f"/v1/registrations/sip:{user}@{DOMAIN}")
            if reply.status_code == 404:
                return []
            reply.raise_for_status()
            found: list[dict[str, object]] = reply.json()["bindings"]
            return found

    def wait_bindings(
        self, user: str, count: int, timeout: float = 15.0
    ) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.bindings(user)
            if len(found) == count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{user} has {self.bindings(user)}, not {count} bindings")


@contextmanager
def running_cluster(
    workdir: Path,
    a_host: str = LOOPBACK,
    *,
    a_tls_port: int | None = None,
    a_listen: str = "",
    both: dict[str, str] | None = None,
    **a_settings: str,
) -> Iterator[Cluster]:
    """`a_host`: the address edge A listens on (a NAT test's public link); `a_tls_port`: a
    TLS listener of edge A too (its certificate in `a_settings`); `a_listen`: more of edge A's
    listeners (`,ws:host:port`); `both`: settings of both
    edges (the CA that edge B checks edge A's certificate with);
    `a_settings`: more ``CALLMESH_*`` settings of edge A (lower-case names, no prefix)."""
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    with running_edge(workdir / "b", **(both or {})) as b:
        registrar_port = free_port()
        env = dict(
            b.env,
            CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{registrar_port}",
            CALLMESH_REGISTRAR_MIN_EXPIRES="1",
            CALLMESH_REGISTRAR_WORKERS="4",
            CALLMESH_DIGEST_ALGORITHMS="MD5,SHA-256",
        )
        log = open(workdir / "registrar.log", "wb")  # noqa: SIM115
        registrar = subprocess.Popen(
            [sys.executable, "-m", "services.registrar"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
        sip_port, http_port = free_port(), free_port()
        a_env = dict(
            b.env,
            CALLMESH_SIP_LISTEN=f"udp:{a_host}:{sip_port},tcp:{a_host}:{sip_port}"
            + (f",tls:{a_host}:{a_tls_port}" if a_tls_port else "")
            + a_listen,
            CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http_port}",
            CALLMESH_TRUSTED_NETWORKS="192.0.2.0/24",
            # Every phone and caller of the tests is 127.0.0.1: one "source" far busier
            # than any real phone, which the flood limit and the sweep detection would block.
            CALLMESH_PIKE_LIMIT="100000",
            CALLMESH_SCANNER_SWEEP_TARGETS="100000",
            CALLMESH_INSTANCE="edge-a",
            CALLMESH_DIGEST_ALGORITHMS="MD5,SHA-256",
        )
        a_env.update({f"CALLMESH_{name.upper()}": value for name, value in a_settings.items()})
        a = Edge(b.namespace, sip_port, http_port, b.routing_port, workdir / "a", a_env)
        a.sip_host = a_host
        cluster = Cluster(a, b, registrar_port, registrar)
        try:
            a.start()
            _wait_http(cluster)
            yield cluster
        finally:
            stop_all_sipp()
            a.stop()
            registrar.terminate()
            registrar.wait(10)
            delete_queues(b.namespace, REGISTER_QUEUE)


def _wait_http(cluster: Cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with cluster.api() as api:
                if api.get("/readyz").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("registrar not ready")


@asynccontextmanager
async def registrar_events(namespace: str) -> AsyncIterator[asyncio.Queue[Envelope]]:
    """Every `registrar.…` event published while inside."""
    bus = AmqpBus(RABBITMQ_URL, namespace, "test", "listener")
    await bus.start()
    heard: asyncio.Queue[Envelope] = asyncio.Queue()

    async def on_event(envelope: Envelope) -> None:
        await heard.put(envelope)

    await bus.subscribe([REGISTRAR_EVENTS], on_event)
    try:
        yield heard
    finally:
        await bus.close()


async def next_event(
    heard: asyncio.Queue[Envelope], kind: str, aor: str, within: float
) -> Envelope:
    async with asyncio.timeout(within):
        while True:
            envelope = await heard.get()
            if envelope.type == kind and envelope.data["binding"]["aor"] == aor:
                return envelope
