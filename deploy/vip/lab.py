"""Two "boxes" sharing a virtual IP, on one machine: network namespaces on a bridge.

    root namespace (the LAN's host)
    bridge <net>+1/28 ─┬─ veth ─ box a namespace: eth0 <net>+2/28 [keepalived, edge]
      SIPp gateway,    ├─ veth ─ box b namespace: eth0 <net>+3/28 [keepalived, edge]
      rtpengine,       └─ veth ─ caller namespace: eth0 <net>+4/28 (SIPp calling the VIP)
      forwarders to Redis and RabbitMQ on 127.0.0.1
    the VIP: <net>+10, on the master's eth0

``<net>`` is a /28 of 198.51.100.0/24 (TEST-NET-2, RFC 5737: never routed, never
this machine's) that no interface has yet, so concurrent labs never share
addresses.  The boxes' processes cannot reach the host's loopback, where the
tests' Redis and RabbitMQ listen (and RabbitMQ's guest may only log in from
loopback), so a ``socat`` forwarder on the bridge address carries each to it.

Each box sets ``net.ipv4.ip_nonlocal_bind=1`` (the sysctl is per network
namespace): its edge listens on the VIP whether the box holds it or not, so the
standby edge is up, ready and serving the moment keepalived moves the address to
it (docs/high-availability.md says why this and not ``0.0.0.0``).

Everything is removed on the way out: every process started in the namespaces,
the forwarders, the namespaces (their veth ends go with them) and the bridge.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from deploy.labs.ports import free_port
from deploy.vip import keepalived

REPO = Path(__file__).resolve().parents[2]
NETWORK = "198.51.100"
PREFIX = 28
HOST, BOX_A, BOX_B, CALLER, VIP = 1, 2, 3, 4, 10
"""Host numbers within the lab's /28."""
READY_WITHIN = 30.0


@dataclass(frozen=True)
class Box:
    name: str
    namespace: str
    address: str
    peer: str

    def run(self, *argv: str) -> list[str]:
        """`argv` run inside this box."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Lab:
    folder: Path
    bridge: str
    host: str
    """The root namespace's address on the LAN: where the gateway and rtpengine listen."""
    vip: str
    boxes: dict[str, Box]
    caller: Box
    """The namespace the calls come from (its `peer` is the VIP)."""
    redis_url: str = ""
    rabbitmq_url: str = ""
    """The tests' Redis and RabbitMQ as the boxes reach them (through the forwarders)."""
    processes: dict[tuple[str, str], subprocess.Popen[bytes]] = field(default_factory=dict)
    """By box and name ("edge", "keepalived")."""
    forwarders: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """The socats on the host's side (the stores' and :meth:`expose`'s)."""
    exposed: list[int] = field(default_factory=list)

    def expose(self, ports: list[int]) -> None:
        """Make the host's loopback `ports` reachable at the same loopback ports inside the
        boxes (each box's side: :meth:`forward_into`): a server on loopback (a Sentinel group,
        a RabbitMQ cluster) is then reached by a box's processes through the very URLs the
        host's use, even where one server names another by its loopback address (a Sentinel
        naming the primary)."""
        for port in ports:
            listen = f"TCP-LISTEN:{port},bind={self.host},fork,reuseaddr"
            _listen([listen, f"TCP:127.0.0.1:{port}"], self.host, port, self.forwarders)
        self.exposed += ports

    def forward_into(self, box: Box) -> None:
        """The box's side of :meth:`expose`, before its processes start (again after the box
        was killed: its forwarders died with it)."""
        program = _socat()
        for port in self.exposed:
            argv = [program, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                    f"TCP:{self.host}:{port}"]  # fmt: skip # one command
            self.start(box, f"socat-{port}", argv, {})

    def start(self, box: Box, name: str, argv: list[str], env: dict[str, str]) -> None:
        """`argv` in `box`, its output in ``<folder>/<box>-<name>.log``."""
        with (self.folder / f"{box.name}-{name}.log").open("ab") as log:
            process = subprocess.Popen(
                box.run(*argv), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[box.name, name] = process

    def start_keepalived(self, box: Box, priority: int, http_port: int) -> None:
        config = keepalived.BoxConfig(
            router_id=f"callmesh-{box.name}",
            interface="eth0",
            source=box.address,
            peer=box.peer,
            vip=f"{self.vip}/{PREFIX}",
            priority=priority,
            readyz_url=f"http://{box.address}:{http_port}/readyz",
            peer_readyz_url=f"http://{box.peer}:{http_port}/readyz",
        )
        conf = self.folder / f"keepalived-{box.name}.conf"
        conf.write_text(keepalived.render(config))
        self.start(box, "keepalived", keepalived.command(conf, self.folder, box.name), {})

    def start_edge(self, box: Box, env: dict[str, str]) -> None:
        """`python -m services.edge` in `box` (:meth:`wait_ready` waits for it)."""
        self.start(box, "edge", [sys.executable, "-m", "services.edge"], env)

    def wait_ready(self, box: Box, http_port: int) -> None:
        """Until the edge in `box` answers /readyz with 200, as keepalived's check asks."""
        url = f"http://{box.address}:{http_port}/readyz"
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            with suppress(httpx.TransportError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"edge in box {box.name} not ready: {self.log(box, 'edge')}")

    def start_probe(self, seconds: float, sip_port: int = 5060) -> subprocess.Popen[str]:
        """``deploy.vip.probe`` against the VIP from the caller's namespace, for `seconds`."""
        argv = [sys.executable, "-m", "deploy.vip.probe", self.vip, str(sip_port), str(seconds)]
        return subprocess.Popen(self.caller.run(*argv), cwd=REPO, stdout=subprocess.PIPE, text=True)

    def edge_settings(self, box: Box, http_port: int, sip_port: int = 5060) -> dict[str, str]:
        """The settings that place an edge in `box` behind the VIP (the rest is the caller's)."""
        return {
            "CALLMESH_SIP_LISTEN": f"udp:{self.vip}:{sip_port},tcp:{self.vip}:{sip_port}",
            "CALLMESH_SIP_ADVERTISE": f"{self.vip}:{sip_port}",
            "CALLMESH_HTTP_LISTEN": f"{box.address}:{http_port}",
            "CALLMESH_REDIS_URL": self.redis_url,
            "CALLMESH_RABBITMQ_URL": self.rabbitmq_url,
            # the callers' namespace calls without a digest challenge (a trusted PBX, say); the
            # gateways are trusted as gateways of the routing table
            "CALLMESH_TRUSTED_NETWORKS": f"{self.caller.address}/32",
        }

    def holds(self, box: Box) -> bool:
        """Whether the VIP is on `box`'s interface now (a box whose keepalived was killed keeps
        it there: nothing is left to remove it; the peer's gratuitous ARPs steer the LAN away)."""
        shown = subprocess.run(
            box.run("ip", "-4", "-o", "addr", "show", "dev", "eth0"),
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip # one option a row
        return f" {self.vip}/" in shown.stdout

    def wait_holder(self, box: Box, within: float) -> float:
        """Seconds until `box` holds the VIP (polled every 10 ms); raises past `within`."""
        started = time.monotonic()
        while not self.holds(box):
            assert time.monotonic() - started < within, f"{box.name} lacks the VIP: {self.logs()}"
            time.sleep(0.01)
        return time.monotonic() - started

    def kill(self, box: Box) -> None:
        """SIGKILL every process in `box` (the box failing: keepalived and edge alike)."""
        pids = subprocess.run(
            ["ip", "netns", "pids", box.namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        for key in [key for key in self.processes if key[0] == box.name]:
            self.kill_one(box, key[1])

    def kill_one(self, box: Box, name: str) -> None:
        """SIGKILL the process `name` of `box` alone (its edge crashing, say)."""
        process = self.processes.pop((box.name, name))
        with suppress(ProcessLookupError):
            process.kill()
        process.wait(10)

    def cut(self, box: Box, url: str) -> None:
        """Refuse `box`'s connections to `url`'s server from now on, open ones included (its next
        packet gets a TCP reset): the box losing its way to Redis or RabbitMQ."""
        port = urlsplit(url).port
        run(*box.run("nft", "add table inet callmesh_cut"))
        run(
            *box.run(
                "nft", "add chain inet callmesh_cut out { type filter hook output priority 0 ; }"
            )
        )
        run(
            *box.run(
                "nft", f"add rule inet callmesh_cut out tcp dport {port} reject with tcp reset"
            )
        )

    def mend(self, box: Box) -> None:
        """Undo every :meth:`cut` of `box`."""
        run(*box.run("nft", "delete table inet callmesh_cut"))

    def drop_vip(self, box: Box) -> None:
        """Remove the VIP a killed keepalived left on `box` (as a rebooted box comes up without
        it), so that the box can rejoin as the backup."""
        if self.holds(box):
            run(*box.run("ip", "addr", "del", f"{self.vip}/{PREFIX}", "dev", "eth0"))

    def log(self, box: Box, name: str) -> str:
        path = self.folder / f"{box.name}-{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def logs(self) -> str:
        return "".join(
            f"\n--- {box.name} {name}:\n{self.log(box, name)}"
            for box in self.boxes.values()
            for name in ("keepalived", "edge")
        )


def run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@contextmanager
def vip_lab(folder: Path, redis_url: str, rabbitmq_url: str) -> Iterator[Lab]:
    """The LAN, both boxes and the caller's namespace; removed on the way out."""
    suffix = os.urandom(3).hex()
    base = _free_network()

    def at(host: int) -> str:
        return f"{NETWORK}.{base + host}"

    lab = Lab(
        folder, f"cmvl{suffix}", at(HOST), at(VIP),
        {
            "a": Box("a", f"cmvip-{suffix}-a", at(BOX_A), at(BOX_B)),
            "b": Box("b", f"cmvip-{suffix}-b", at(BOX_B), at(BOX_A)),
        },
        Box("caller", f"cmvip-{suffix}-c", at(CALLER), at(VIP)),
    )  # fmt: skip # the lab's parts in one row each
    namespaces = [*lab.boxes.values(), lab.caller]
    try:
        run("ip", "link", "add", lab.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{lab.host}/{PREFIX}", "dev", lab.bridge)
        run("ip", "link", "set", lab.bridge, "up")
        for box in namespaces:
            host_end = f"cmv{box.name[0]}{suffix}"
            run("ip", "netns", "add", box.namespace)
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                "netns", box.namespace)  # fmt: skip # one command
            run("ip", "link", "set", host_end, "master", lab.bridge, "up")
            run(*box.run("ip", "addr", "add", f"{box.address}/{PREFIX}", "dev", "eth0"))
            for link in ("lo", "eth0"):
                run(*box.run("ip", "link", "set", link, "up"))
            run(*box.run("sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"))
        lab.redis_url = _forwarded(redis_url, lab.host, lab.forwarders)
        lab.rabbitmq_url = _forwarded(rabbitmq_url, lab.host, lab.forwarders)
        yield lab
    finally:
        for box in namespaces:
            lab.kill(box)
        for forwarder in lab.forwarders:  # socat forks a child per connection, in its group
            with suppress(ProcessLookupError):
                os.killpg(forwarder.pid, signal.SIGTERM)
            forwarder.wait(10)
        for box in namespaces:
            subprocess.run(["ip", "netns", "del", box.namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", lab.bridge], capture_output=True, check=False)


def _forwarded(url: str, host: str, forwarders: list[subprocess.Popen[bytes]]) -> str:
    """`url` with its server reached through a socat on `host` (the boxes' view of it)."""
    parts = urlsplit(url)
    port = free_port(host)
    listen = f"TCP-LISTEN:{port},bind={host},fork,reuseaddr"
    _listen([listen, f"TCP:{parts.hostname}:{parts.port}"], host, port, forwarders)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _socat() -> str:
    program = shutil.which("socat")
    assert program is not None, "socat is missing: apt-get install -y socat"
    return program


def _listen(
    addresses: list[str], host: str, port: int, forwarders: list[subprocess.Popen[bytes]]
) -> None:
    """A socat between `addresses` on the host's side; returns once it listens on host:port."""
    forwarders.append(
        subprocess.Popen(
            [_socat(), *addresses],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
    )  # fmt: skip # one process
    deadline = time.monotonic() + 5
    while True:
        with socket.socket() as probe, suppress(OSError):
            probe.connect((host, port))
            break
        assert time.monotonic() < deadline, f"socat did not listen on {host}:{port}"
        time.sleep(0.05)


def _free_network() -> int:
    """The base of a /28 of TEST-NET-2 nothing on this host uses."""
    for _ in range(20):
        base = 16 * (os.urandom(1)[0] % 16)
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "to", f"{NETWORK}.{base}/{PREFIX}"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip # one option a row
        if not shown.stdout.strip():
            return base
    raise RuntimeError(f"no free /{PREFIX} in {NETWORK}.0/24 after 20 tries")
