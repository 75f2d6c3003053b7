"""Two data centres on one machine's loopback: each its own broker, edge, registrar and
routing service; one Redis primary (DC 1) with its replica in DC 2, and three Sentinels —
one per DC and a tie-breaker standing for a third site.

    DC 1: RabbitMQ ⇄ federation ⇄ RabbitMQ :DC 2
          edge, registrar, routing       edge, registrar, routing
          Redis primary ──replication──▶ Redis replica
          Sentinel            Sentinel (tie-breaker)           Sentinel

Every service of both DCs names the three Sentinels in ``CALLMESH_REDIS_URL`` (its
own DC's first) and its own DC's broker in ``CALLMESH_RABBITMQ_URL``; both brokers
load the definitions of ``deploy.two_dc.federation`` (each federates the other's
events exchange).  The edges share ``CALLMESH_RECORD_ROUTE_KEYS`` and
``CALLMESH_TOPOLOGY_KEYS``.  docs/high-availability.md ("Two data centres") says
why this design.

The API the tests, the benchmark and the fault drill use (docs/high-availability.md
has a complete example)::

    with two_dc_lab(Path("/tmp/lab")) as lab:       # both DCs up and ready (10-40 s)
        lab.wait_routed(2, lab.put(1, {...}))         # a route through DC 1, seen by DC 2
        lab.subscriber("alice", "pw")                 # through DC 1's registrar API
        phone = UdpPeer("alice", password="pw"); phone.register(lab.dcs[1].edge_sip)
        call(lab.dcs[2].edge_sip, phone.aor, phone)   # 486: the INVITE reached the phone
        lab.kill_dc(1)                                # every DC 1 process SIGKILLed
        lab.wait_primary(2)                           # seconds until DC 2's Redis is primary
        lab.check_serving(2, [phone], gateway, "1555")  # raises unless DC 2 serves
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from deploy.labs.ports import free_port
from deploy.processes import stop_process
from deploy.two_dc import federation, servers
from deploy.two_dc.peers import UdpPeer, call
from deploy.two_dc.servers import LOOPBACK, SENTINEL_SERVICE

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "callmesh"
DOMAIN = "example.com"
BROKER_USER, BROKER_PASSWORD = "callmesh", "two-dc-lab"
START_WITHIN = 120.0
"""Seconds for both DCs to be up (two Erlang VMs booting on a busy 2-core machine)."""
REREGISTER_WITHIN = 30.0
TRANSIENT = {0, 500, 503}
"""A REGISTER's answers while the store fails over: none (lost), the edge's 500 (registrar
too slow), the registrar's 503."""
RESTART_TRIES = 3
"""Starts of a DC's stores after its kill: a broker started just after its SIGKILL can find its
Erlang node name still held and exit (a CI run saw it once); a supervisor would start it again."""


@dataclass
class DataCentre:
    number: int
    redis: int
    sentinel: int
    broker: int
    edge_sip: int = 0
    edge_http: int = 0
    registrar_http: int = 0
    routing_http: int = 0
    """The services' ports, picked when they first start (a port picked while the brokers
    boot may meanwhile become some other process's outgoing port on a busy machine)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"dc{self.number}"

    @property
    def node(self) -> str:
        """The broker's Erlang node name: unique on the machine (epmd holds every lab's)."""
        return f"cm{os.getpid()}x{self.broker}{self.name}"

    @property
    def broker_url(self) -> str:
        """The broker, vhost ``/`` (no path: a trailing ``/`` is the vhost "" to federation)."""
        return f"amqp://{BROKER_USER}:{BROKER_PASSWORD}@{LOOPBACK}:{self.broker}"

    def api(self, port: int) -> httpx.Client:
        return httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10.0)


@dataclass
class TwoDcLab:
    folder: Path
    dcs: dict[int, DataCentre]
    tie_breaker: int
    """The third site's Sentinel (a port here; a small VM elsewhere in production)."""
    keys: dict[str, str]
    """The secrets every edge of both DCs shares."""
    others: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    refusals: list[int] = field(default_factory=list)
    """The answers to :meth:`reregister`'s REGISTERs before their 200 (0: none came)."""

    def redis_url(self, dc: DataCentre) -> str:
        """The Sentinels, `dc`'s own first: whichever answers names the primary."""
        ports = [dc.sentinel, self.tie_breaker]
        ports += [other.sentinel for other in self.dcs.values() if other is not dc]
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/0"

    def env(self, dc: DataCentre, service: str, http: int) -> dict[str, str]:
        return {
            **os.environ,
            **self.keys,
            "CALLMESH_NAMESPACE": NAMESPACE,
            "CALLMESH_INSTANCE": f"{dc.name}-{service}",
            "CALLMESH_REDIS_URL": self.redis_url(dc),
            "CALLMESH_RABBITMQ_URL": dc.broker_url,
            "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{http}",
            "CALLMESH_LOG_LEVEL": "INFO",
            "CALLMESH_DIGEST_ALGORITHMS": "MD5,SHA-256",
        }

    def start_stores(self, dc: DataCentre, primary: int | None) -> None:
        """`dc`'s Redis (a replica of the one at port `primary`, else the primary), its broker
        (federating the other DC's events; its data kept from an earlier start) and Sentinel."""
        folder = self.folder
        dc.processes["redis"] = servers.redis_server(folder, dc.redis, replica_of=primary)
        peer = self.dcs[3 - dc.number]
        found = federation.definitions(
            NAMESPACE, peer.name, peer.broker_url, BROKER_USER, BROKER_PASSWORD
        )
        dc.processes["broker"] = servers.rabbit_node(folder, dc.node, dc.broker, found)
        dc.processes["sentinel"] = servers.sentinel(folder, dc.sentinel, primary or dc.redis)

    def wait_stores(self, dc: DataCentre) -> None:
        """Until `dc`'s Redis and broker accept connections."""
        ports = {dc.redis: dc.processes["redis"], dc.broker: dc.processes["broker"]}
        servers.wait_accepting(ports, START_WITHIN)

    def restart_dc(self, number: int) -> float:
        """Start DC `number` again after :meth:`kill_dc`, as its machines coming back: its Redis
        a replica of today's primary, its broker with the data it had, its Sentinel and
        services.  Seconds until every service is ready and the Sentinels see it."""
        dc = self.dcs[number]
        started = time.monotonic()
        for attempt in range(1, RESTART_TRIES + 1):
            self.start_stores(dc, primary=self.primary())
            try:
                self.wait_stores(dc)
                break
            except AssertionError:  # a store that exited at once: as a supervisor would, again
                self.kill_dc(number)
                if attempt == RESTART_TRIES:
                    raise
                time.sleep(2.0)
        self.start_services(dc)
        self.wait_ready(dc, START_WITHIN)
        _wait_sentinels(self, START_WITHIN)
        return time.monotonic() - started

    def start_services(self, dc: DataCentre) -> None:
        """`dc`'s routing service, registrar and edge, on the ports they had if they ran before."""
        if not dc.edge_sip:
            dc.edge_sip, dc.edge_http = free_port(), free_port()
            dc.registrar_http, dc.routing_http = free_port(), free_port()
        edge = self.env(dc, "edge", dc.edge_http)
        edge["CALLMESH_SIP_LISTEN"] = f"udp:{LOOPBACK}:{dc.edge_sip},tcp:{LOOPBACK}:{dc.edge_sip}"
        edge["CALLMESH_OVERLOAD_LAG_MS"] = "0"  # calls, not load shedding, are what is shown
        edge["CALLMESH_PIKE_LIMIT"] = "100000"  # every peer is 127.0.0.1: one busy "source"
        edge["CALLMESH_FR_TIMEOUT"] = "2"  # a dead DC's edge as a next hop fails in 2 s, not 5
        for service, env in (
            ("routing", self.env(dc, "routing", dc.routing_http)),
            ("registrar", self.env(dc, "registrar", dc.registrar_http)),
            ("edge", edge),
        ):
            argv = [sys.executable, "-m", f"services.{service}"]
            log = self.folder / f"{dc.name}-{service}.log"
            with log.open("ab") as out:
                dc.processes[service] = subprocess.Popen(
                    argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip # one process

    def wait_ready(self, dc: DataCentre, within: float) -> None:
        deadline = time.monotonic() + within
        for port in (dc.routing_http, dc.registrar_http, dc.edge_http):
            while not _ready(dc, port):
                dead = [name for name, p in dc.processes.items() if p.poll() is not None]
                assert not dead, f"{dc.name} {dead} died: {self.logs(dc)}"
                assert time.monotonic() < deadline, f"{dc.name} not ready: {self.logs(dc)}"
                time.sleep(0.2)

    def kill_dc(self, number: int) -> None:
        """SIGKILL every process of DC `number`: edge, services, broker, Redis, Sentinel."""
        dc = self.dcs[number]
        for process in dc.processes.values():
            servers.kill_group(process)
        dc.processes.clear()

    def primary(self) -> int:
        """The Redis primary's port, as the first live Sentinel says."""
        for dc in self.dcs.values():
            for port in (dc.sentinel, self.tie_breaker):
                with suppress(redis.RedisError, OSError):
                    client = redis.Redis(LOOPBACK, port, socket_timeout=1)
                    address = client.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
                    client.close()
                    if isinstance(address, tuple):
                        return int(address[1])
        raise AssertionError("no Sentinel answers")

    def wait_primary(self, number: int, within: float = 30.0) -> float:
        """Seconds until the Sentinels name DC `number`'s Redis the primary."""
        started = time.monotonic()
        while self.primary() != self.dcs[number].redis:
            assert time.monotonic() - started < within, "the Sentinels named no new primary"
            time.sleep(0.05)
        return time.monotonic() - started

    def subscriber(self, user: str, password: str, dc: int = 1) -> None:
        with self.dcs[dc].api(self.dcs[dc].registrar_http) as api:
            body = {"domain": DOMAIN, "password": password}
            api.put(f"/v1/subscribers/{user}@{DOMAIN}", json=body).raise_for_status()

    def put(self, dc: int, records: dict[str, dict[str, object]], within: float = 30.0) -> int:
        """PUT each body at ``/v1/<path>`` of DC `dc`'s routing service: the table version.
        A 503 (the store failing over) is tried again after a second, as a client would."""
        version = 0
        deadline = time.monotonic() + within
        with self.dcs[dc].api(self.dcs[dc].routing_http) as api:
            for path, body in records.items():
                while (reply := api.put(f"/v1/{path}", json=body)).status_code == 503:
                    assert time.monotonic() < deadline, f"dc{dc}'s routing service answers 503"
                    time.sleep(1.0)
                reply.raise_for_status()
                version = max(version, int(reply.json()["version"]))
        return version

    def routing_version(self, dc: int) -> int:
        """The routing table version DC `dc`'s edge routes with (its /metrics)."""
        with self.dcs[dc].api(self.dcs[dc].edge_http) as api:
            for line in api.get("/metrics").text.splitlines():
                name, _, value = line.partition(" ")
                if name == "callmesh_edge_routing_version":
                    return int(float(value))
        return 0

    def wait_routed(self, dc: int, version: int, within: float = 20.0) -> float:
        """Seconds until DC `dc`'s edge routes with table `version` (polled every 10 ms)."""
        started = time.monotonic()
        while self.routing_version(dc) < version:
            assert time.monotonic() - started < within, f"dc{dc} never routed with {version}"
            time.sleep(0.01)
        return time.monotonic() - started

    def reregister(self, dc: int, phone: UdpPeer, within: float = REREGISTER_WITHIN) -> float:
        """Register `phone` through DC `dc`'s edge until a 200: seconds it took.

        While the store fails over, the registrar answers 503 (its Redis wait ran out) or
        the edge 500 (the registrar did not answer within the edge's 5 s); a lost datagram
        is a timeout.  Each is tried again 0.1 s later; any other answer fails.  What came
        before the 200 is kept in `refusals`.
        """
        started = time.monotonic()
        while True:
            try:
                status = phone.register(self.dcs[dc].edge_sip)
            except TimeoutError:
                status = 0
            if status == 200:
                return time.monotonic() - started
            self.refusals.append(status)
            assert status in TRANSIENT, f"REGISTER through dc{dc}: {status} {self.logs()}"
            assert time.monotonic() - started < within, f"dc{dc} refused REGISTERs: {self.logs()}"
            time.sleep(0.1)

    def check_serving(self, dc: int, phones: list[UdpPeer], gateway: UdpPeer, number: str) -> None:
        """Raise unless DC `dc` serves: a call to `number` reaches `gateway`, each phone is
        reached (its binding as stored before) and then re-registers through DC `dc`."""
        edge = self.dcs[dc].edge_sip
        status = call(edge, f"sip:{number}@{DOMAIN}", gateway)
        assert status == 486, f"a call to {number} through dc{dc}: {status} {self.logs()}"
        for phone in phones:
            status = call(edge, phone.aor, phone)
            assert status == 486, f"a call to {phone.aor} through dc{dc}: {status} {self.logs()}"
            self.reregister(dc, phone)

    def logs(self, *dcs: DataCentre) -> str:
        parts = []
        for dc in dcs or tuple(self.dcs.values()):
            for service in ("edge", "registrar", "routing"):
                path = self.folder / f"{dc.name}-{service}.log"
                if path.exists():
                    parts.append(f"\n--- {dc.name} {service}:\n{path.read_text()[-2000:]}")
        return "".join(parts)


def _ready(dc: DataCentre, port: int) -> bool:
    with suppress(httpx.TransportError), dc.api(port) as api:
        return api.get("/readyz", timeout=2).status_code == 200
    return False


def _key() -> str:
    return "1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


@contextmanager
def two_dc_lab(folder: Path) -> Iterator[TwoDcLab]:
    """Both DCs up and ready in `folder` (logs there); every process stopped after."""
    folder.mkdir(parents=True, exist_ok=True)
    dcs = {n: DataCentre(n, free_port(), free_port(), free_port()) for n in (1, 2)}
    keys = {"CALLMESH_RECORD_ROUTE_KEYS": _key(), "CALLMESH_TOPOLOGY_KEYS": _key()}
    lab = TwoDcLab(folder, dcs, free_port(), keys)
    one, two = dcs[1], dcs[2]
    try:
        for dc in (one, two):
            lab.start_stores(dc, primary=None if dc is one else one.redis)
        lab.others["sentinel"] = servers.sentinel(folder, lab.tie_breaker, one.redis)
        for dc in (one, two):
            lab.wait_stores(dc)
        for dc in (one, two):
            lab.start_services(dc)
        _wait_sentinels(lab, START_WITHIN)
        for dc in (one, two):
            lab.wait_ready(dc, START_WITHIN)
        yield lab
    finally:
        for dc in dcs.values():
            for name, process in dc.processes.items():
                if name == "broker":  # nothing in it is kept: no need for a clean stop
                    servers.kill_group(process)
                else:
                    stop_process(process, grace=5.0)
        for process in lab.others.values():
            stop_process(process, grace=2.0)


def _wait_sentinels(lab: TwoDcLab, within: float) -> None:
    """Until every Sentinel knows the two others and the replica in sync (a failover needs
    both; the Sentinels find each other through the primary's hello channel)."""
    deadline = time.monotonic() + within
    ports = [lab.tie_breaker, *(dc.sentinel for dc in lab.dcs.values())]
    while not all(_sees(port, others=2, replicas=1) for port in ports):
        assert time.monotonic() < deadline, "the Sentinels did not find each other"
        time.sleep(0.2)


def _sees(port: int, others: int, replicas: int) -> bool:
    with suppress(redis.RedisError, OSError, AssertionError):
        client = redis.Redis(LOOPBACK, port, socket_timeout=1)
        known = client.sentinel_slaves(SENTINEL_SERVICE)
        peers = client.sentinel_sentinels(SENTINEL_SERVICE)
        client.close()
        assert isinstance(known, list) and isinstance(peers, list)
        synced = [r for r in known if not r.get("is_sdown", True)]
        return len(synced) >= replicas and len(peers) >= others
    return False
