"""The platform the drill breaks: every service a process, every store replicated.

A Redis primary, its replica and three Sentinels (``deploy.labs.sentinels``), a
3-node RabbitMQ cluster (``deploy.labs.rabbit_cluster``), a fresh PostgreSQL
database for the call records, and the Procfile's services (``deploy/Procfile``:
routing, registrar, health, accounting, edge-a, edge-b) on free loopback ports,
all on the Sentinel URL and every node's URL.  Edge-a takes the calls (loopback
trusted, as a carrier's trunk), edge-b the phones (challenged).  Where the VIP
lab can run (root, network namespaces, keepalived, socat), two more edges sit
on its boxes behind the VIP, reaching the same stores through the lab's
forwarders, and the gateway listens on the lab's bridge so that every edge
reaches it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.labs.ports import LOOPBACK, free_port
from deploy.labs.rabbit_cluster import RabbitCluster, rabbit_cluster
from deploy.labs.sentinels import SentinelGroup, sentinel_group
from deploy.processes import stop_process
from deploy.procfile import PROCFILE, parse_procfile
from deploy.vip.lab import Lab, vip_lab

REPO = Path(__file__).resolve().parents[2]
READY_WITHIN = 60.0
BOX_HTTP_PORT = 8080
DOMAIN = "drill.example.com"
CALLS_EDGE, PHONES_EDGE = "edge-a", "edge-b"


def _key() -> str:
    return "1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class Service:
    """One Procfile entry run by the drill: restarted with the same settings after a kill."""

    name: str
    argv: list[str]
    env: dict[str, str]
    http_port: int
    sip_port: int = 0
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Platform:
    folder: Path
    sentinels: SentinelGroup
    rabbit: RabbitCluster
    token: str
    env: dict[str, str]
    """What every service shares (namespace, stores, keys, token)."""
    gateway_host: str = LOOPBACK
    services: dict[str, Service] = field(default_factory=dict)
    lab: Lab | None = None

    def start(self, name: str) -> None:
        """Start service `name` (again) and wait until its /readyz answers 200."""
        service = self.services[name]
        with (self.folder / f"{name}.log").open("ab") as log:
            service.process = subprocess.Popen(
                service.argv, cwd=REPO, env=service.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_ready(name)

    def kill(self, name: str) -> None:
        """SIGKILL service `name`: no goodbye, as a crash."""
        process = self.services[name].process
        assert process is not None
        process.kill()
        process.wait(10)

    def wait_ready(self, name: str) -> None:
        service = self.services[name]
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            with suppress(httpx.TransportError):
                if self.api(name).get("/readyz").status_code == 200:
                    return
            assert service.process is not None and service.process.poll() is None, self.log(name)
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready in {READY_WITHIN:g} s: {self.log(name)}")

    def api(self, name: str) -> httpx.Client:
        """An HTTP client of service `name`'s API, with the platform's token."""
        return httpx.Client(
            base_url=f"http://{LOOPBACK}:{self.services[name].http_port}",
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10.0,
        )

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def start_box(self, box_name: str) -> None:
        """The edge of VIP box `box_name` (and its forwarders to the stores), ready."""
        assert self.lab is not None
        box = self.lab.boxes[box_name]
        self.lab.forward_into(box)
        settings = self.lab.edge_settings(box, BOX_HTTP_PORT)
        env = {**self.env, **settings, **_stores(self.env)}
        self.lab.start_edge(box, env)
        self.lab.wait_ready(box, BOX_HTTP_PORT)

    def seed(self, gateway_port: int) -> None:
        """One gateway (the drill's SIPp) and a rule sending every number to it."""
        with self.api("routing") as client:
            gateway = {"address": f"sip:{self.gateway_host}:{gateway_port}"}
            client.put("/v1/gateways/drill-gw", json=gateway).raise_for_status()
            rule = {"group": "0", "prefix": "1", "gateways": ["drill-gw"]}
            client.put("/v1/rules/drill", json=rule).raise_for_status()

    def subscribe(self, users: list[str], password: str) -> None:
        with self.api("registrar") as client:
            for user in users:
                body = {"domain": DOMAIN, "password": password}
                client.put(f"/v1/subscribers/{user}@{DOMAIN}", json=body).raise_for_status()


def _stores(env: dict[str, str]) -> dict[str, str]:
    return {name: env[name] for name in ("CALLMESH_REDIS_URL", "CALLMESH_RABBITMQ_URL")}


def vip_lab_possible() -> str:
    """Why the VIP lab cannot run here, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [tool for tool in ("keepalived", "socat", "ip", "nft") if not _which(tool)]
    return f"missing {', '.join(missing)}" if missing else ""


def _which(tool: str) -> bool:
    return bool(shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin"))


def _services(platform: Platform) -> None:
    """The Procfile's entries with free ports; edge-b challenges the loopback phones."""
    for name, (procfile_env, words) in parse_procfile(PROCFILE.read_text()).items():
        argv = [sys.executable, *words[1:]] if words[:1] == ["python"] else words
        env = dict(platform.env, **procfile_env)
        service = Service(name, argv, env, free_port())
        env["CALLMESH_HTTP_LISTEN"] = f"{LOOPBACK}:{service.http_port}"
        if "CALLMESH_SIP_LISTEN" in procfile_env:
            service.sip_port = free_port()
            host_port = f"{LOOPBACK}:{service.sip_port}"
            env["CALLMESH_SIP_LISTEN"] = f"udp:{host_port},tcp:{host_port}"
            env["CALLMESH_INSTANCE"] = name
        if name == PHONES_EDGE:
            env["CALLMESH_TRUSTED_NETWORKS"] = "192.0.2.0/24"
        platform.services[name] = service


@contextmanager
def running_platform(folder: Path, database_url: str, vip: bool) -> Iterator[Platform]:
    """Everything started and ready (the VIP pair too when `vip`); all stopped after."""
    token = os.urandom(16).hex()
    with ExitStack() as stack:
        group = stack.enter_context(sentinel_group())
        cluster = stack.enter_context(rabbit_cluster())
        env = dict(
            os.environ,
            CALLMESH_NAMESPACE=f"drill-{os.urandom(4).hex()}",
            CALLMESH_REDIS_URL=group.url,
            CALLMESH_RABBITMQ_URL=cluster.url,
            CALLMESH_API_TOKEN=token,
            CALLMESH_RECORD_ROUTE_KEYS=_key(),
            CALLMESH_TOPOLOGY_KEYS=_key(),
            CALLMESH_ACCOUNTING_DATABASE_URL=database_url,
            CALLMESH_LOG_LEVEL="WARNING",
            CALLMESH_DIGEST_ALGORITHMS="MD5",  # SIPp answers the first challenge, MD5 only
            # One loopback source places every call and registration: far busier than any
            # real one; the flood limit and the sweep detection would block it.
            CALLMESH_PIKE_LIMIT="100000",
            CALLMESH_SCANNER_SWEEP_TARGETS="100000",
            # Faults, not load shedding, are drilled: a loop made late by a busy shared
            # machine must not refuse INVITEs with 503 (the tests do the same).
            CALLMESH_OVERLOAD_LAG_MS="0",
        )
        platform = Platform(folder, group, cluster, token, env)
        if vip:
            primary = f"redis://{LOOPBACK}:{group.primary()}/0"
            platform.lab = stack.enter_context(vip_lab(folder, primary, cluster.nodes[0].url))
            platform.gateway_host = platform.lab.host
            ports = [*group.servers, *group.sentinels, *(n.port for n in cluster.nodes)]
            platform.lab.expose(ports)
        _services(platform)
        stack.callback(_stop_all, platform)
        for name in platform.services:
            platform.start(name)
        if platform.lab is not None:
            for box_name in platform.lab.boxes:
                platform.start_box(box_name)
            for box_name, priority in (("a", 110), ("b", 100)):
                box = platform.lab.boxes[box_name]
                platform.lab.start_keepalived(box, priority, BOX_HTTP_PORT)
                if box_name == "a":
                    platform.lab.wait_holder(box, 15)
        yield platform


def _stop_all(platform: Platform) -> None:
    for service in platform.services.values():
        if service.process is not None:
            stop_process(service.process, grace=5.0)
