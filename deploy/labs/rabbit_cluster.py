"""A three-node RabbitMQ cluster on loopback ports, for failover tests.

Each node is the installed ``rabbitmq-server`` with its own node name, AMQP and
distribution ports (the kernel's free picks), data and log directories under
one temporary directory, and a shared Erlang cookie (``HOME`` points there).
Why the classic-config peer discovery and not ``rabbitmqctl join_cluster``:
the nodes then form the cluster as they boot, with no CLI round trips
(each starts an Erlang VM: seconds apiece on a busy machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deploy.labs.ports import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
"""The server script itself: ``/usr/sbin/rabbitmq-server`` would switch to the rabbitmq user."""
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
LOOPBACK = "127.0.0.1"
KEEP = os.environ.get("CALLMESH_TEST_KEEP_RABBIT_LOGS")
"""Set: the cluster's directory (logs) is left behind to read."""


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    """Its server's environment: the same again restarts it as the same node, data kept."""

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@dataclass
class RabbitCluster:
    directory: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as ``CALLMESH_RABBITMQ_URL`` takes them."""
        return ",".join(node.url for node in self.nodes)

    def node_at(self, address: str) -> Node:
        return next(node for node in self.nodes if node.address == address)

    def kill(self, node: Node) -> None:
        """SIGKILL the node's Erlang VM (and its script): no goodbye, as a crashed box."""
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()
        self.nodes.remove(node)

    def restart(self, node: Node, within: float = 90.0) -> None:
        """Start a killed `node` again (same name, ports and data); returns once it accepts
        AMQP and the cluster counts it running again."""
        node.process = _launch(node.env, Path(node.env["RABBITMQ_MNESIA_BASE"]).parent)
        self.nodes.append(node)
        _wait_formed(self, within)

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.directory), "ERL_EPMD_ADDRESS": LOOPBACK}

    def running_nodes(self) -> int:
        reply = subprocess.run(
            [CTL, "-n", self.nodes[0].name, "eval", "length(rabbit_nodes:all_running())."],
            env=self.env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        text = reply.stdout.decode().strip()
        return int(text) if text.isdigit() else 0


def _start(cluster: RabbitCluster, names: list[str], n: int) -> Node:
    name, port, dist = names[n], free_port(), free_port()
    home = cluster.directory / name.partition("@")[0]
    home.mkdir()
    peers = "".join(
        f"cluster_formation.classic_config.nodes.{i} = {peer}\n" for i, peer in enumerate(names, 1)
    )
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = {LOOPBACK}:{port}\n"
        "cluster_formation.peer_discovery_backend = classic_config\n" + peers
    )
    (home / "env.conf").write_text("")
    (home / "plugins").write_text("[].\n")
    env = {
        **cluster.env(),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(home / "env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
    }
    return Node(name, port, _launch(env, home), env)


def _launch(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    with (home / "out.log").open("ab") as out:
        return subprocess.Popen(
            [SERVER], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_formed(cluster: RabbitCluster, within: float) -> None:
    """Until every node accepts AMQP and the cluster counts them all running."""
    deadline = time.monotonic() + within
    while not all(_accepts(node.port) for node in cluster.nodes):
        assert time.monotonic() < deadline, f"the cluster did not start in {within:g}s"
        assert all(node.process.poll() is None for node in cluster.nodes), "a node died"
        time.sleep(0.2)
    while cluster.running_nodes() != len(cluster.nodes):
        assert time.monotonic() < deadline, f"the cluster did not form in {within:g}s"
        time.sleep(0.5)


@contextmanager
def rabbit_cluster(size: int = 3, within: float = 90.0) -> Iterator[RabbitCluster]:
    """``size`` nodes clustered and accepting AMQP; all stopped and removed after."""
    cluster = RabbitCluster(Path(tempfile.mkdtemp(prefix="callmesh-rabbit-")))
    cookie = cluster.directory / ".erlang.cookie"
    cookie.write_text(os.urandom(16).hex())
    cookie.chmod(0o400)
    stem = f"cm{os.getpid()}x{free_port()}"
    names = [f"{stem}n{n}@localhost" for n in range(size)]
    try:
        for n in range(size):
            cluster.nodes.append(_start(cluster, names, n))
        _wait_formed(cluster, within)
        yield cluster
    finally:
        for node in list(cluster.nodes):  # nothing in them is kept: no need for a clean stop
            cluster.kill(node)
        if KEEP is None:
            shutil.rmtree(cluster.directory, ignore_errors=True)
