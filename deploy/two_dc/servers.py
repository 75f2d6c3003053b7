"""The lab's data stores as real processes on loopback ports: Redis servers, Sentinels and
single RabbitMQ nodes with the federation plugin and a DC's definitions loaded at boot.

Each process writes its log into the lab's folder and runs in its own session,
so a DC's death is a SIGKILL of each of its process groups (an Erlang VM and
its helpers included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from string import Template

from deploy.labs.ports import free_port
from deploy.two_dc.federation import Definitions

RABBIT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
"""The server script itself: ``/usr/sbin/rabbitmq-server`` would switch to the rabbitmq user."""
LOOPBACK = "127.0.0.1"
SENTINEL_SERVICE = "callmesh"
SENTINEL_TEMPLATE = Path(__file__).with_name("sentinel.conf.template")
DOWN_AFTER_MS = 1000
"""The lab's Sentinels call the primary down after 1 s of silence (docs/high-availability.md
suggests 5 s across sites: a WAN hiccup must not cause a failover)."""


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL `process` and everything in its session: no goodbye, as a failed box."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def redis_server(folder: Path, port: int, replica_of: int | None = None) -> subprocess.Popen[bytes]:
    argv = ["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(folder), "--dbfilename", f"dump-{port}.rdb"]
    argv += ["--protected-mode", "no", "--repl-diskless-sync", "yes"]
    argv += ["--repl-diskless-sync-delay", "0", "--notify-keyspace-events", "Ex"]
    if replica_of is not None:
        argv += ["--replicaof", LOOPBACK, str(replica_of)]
    return spawn(argv, folder / f"redis-{port}.log")


def sentinel_config(port: int, primary: int, directory: Path) -> str:
    """The deployment's Sentinel template filled for one lab Sentinel on loopback."""
    return Template(SENTINEL_TEMPLATE.read_text()).substitute(
        port=port, bind=LOOPBACK, dir=directory, service=SENTINEL_SERVICE,
        primary_host=LOOPBACK, primary_port=primary, down_after_ms=DOWN_AFTER_MS,
    )  # fmt: skip # the template's fields


def sentinel(folder: Path, port: int, primary: int) -> subprocess.Popen[bytes]:
    config = folder / f"sentinel-{port}.conf"
    config.write_text(sentinel_config(port, primary, folder))
    return spawn(["redis-server", str(config), "--sentinel"], folder / f"sentinel-{port}.log")


def rabbit_node(
    folder: Path, name: str, port: int, definitions: Definitions
) -> subprocess.Popen[bytes]:
    """A single RabbitMQ node `name` (no cluster) on `port`, federation enabled, `definitions`
    loaded at boot; its Erlang distribution on a free port, its cookie in `folder`."""
    home = folder / name
    home.mkdir(exist_ok=True)  # a node started again keeps its data
    (home / "definitions.json").write_text(json.dumps(definitions))
    listen = f"listeners.tcp.local = {LOOPBACK}:{port}\n"
    (home / "rabbitmq.conf").write_text(f"{listen}load_definitions = {home / 'definitions.json'}\n")
    (home / "env.conf").write_text("")
    (home / "plugins").write_text("[rabbitmq_federation].\n")
    cookie = folder / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o400)
    env = {
        **os.environ,
        "HOME": str(folder),
        "ERL_EPMD_ADDRESS": LOOPBACK,
        "RABBITMQ_NODENAME": f"{name}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(home / "env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
    }
    return spawn([RABBIT_SERVER], home / "out.log", env)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_accepting(ports: dict[int, subprocess.Popen[bytes]], within: float) -> None:
    """Until every port accepts TCP; raises if its process dies or `within` seconds pass."""
    deadline = time.monotonic() + within
    for port, process in ports.items():
        while not accepts(port):
            assert process.poll() is None, f"the process for port {port} died"
            assert time.monotonic() < deadline, f"nothing accepts on {port} after {within:g} s"
            time.sleep(0.1)
