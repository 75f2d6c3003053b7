"""A Redis primary, its replica and three Sentinels on loopback ports, for failover tests.

Real ``redis-server`` processes (``--sentinel`` for the Sentinels) in a temporary
directory, each on a port of the kernel's choosing; nothing kept on disk.
Sentinel declares the primary down after ``DOWN_AFTER_MS`` of silence, so a
failover takes about that plus an election (a second or two).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from deploy.labs.ports import free_port
from deploy.processes import stop_process

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
LOOPBACK = "127.0.0.1"
KEEP = os.environ.get("CALLMESH_TEST_KEEP_SENTINEL_LOGS")
"""Set: the group's directory (logs, configurations) is left behind to read."""


@dataclass
class SentinelGroup:
    """The processes and ports of one group; ``primary`` is the port the Sentinels name now."""

    directory: Path
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    sentinels: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary(self) -> int:
        """The primary's port as the first Sentinel answering says."""
        for port in self.sentinels:
            try:
                client = redis.Redis(LOOPBACK, port, socket_timeout=1)
                address = client.sentinel_get_master_addr_by_name(SERVICE)
                client.close()
                assert isinstance(address, tuple)
                return int(address[1])
            except (redis.RedisError, OSError, AssertionError):
                continue
        raise AssertionError("no Sentinel answers")

    def start_server(self, port: int, replica_of: int | None = None) -> None:
        args = ["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        args += ["--dbfilename", f"dump-{port}.rdb", "--protected-mode", "no"]
        args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            args += ["--replicaof", LOOPBACK, str(replica_of)]
        self.servers[port] = _spawn(args, self.directory / f"redis-{port}.log")

    def kill(self, port: int) -> None:
        """SIGKILL the server at ``port``: no goodbye, as a crashed box."""
        process = self.servers.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def freeze(self, port: int) -> None:
        """SIGSTOP the server at ``port``: it keeps its connections but answers nothing, as a
        hung box or a cut network (a killed one refuses at once, which clients notice)."""
        self.servers[port].send_signal(signal.SIGSTOP)

    def thaw(self, port: int) -> None:
        """SIGCONT: the frozen server answers again, still believing it is the primary."""
        self.servers[port].send_signal(signal.SIGCONT)

    def wait_ready(self, replicas: int, within: float = 20.0) -> None:
        """Until every Sentinel knows the primary, ``replicas`` in sync and the other Sentinels."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = all(self._sees(port, replicas) for port in self.sentinels)
            if seen and self._online(replicas):
                return
            time.sleep(0.1)
        raise AssertionError("the Sentinel group did not form in time")

    def _online(self, replicas: int) -> bool:
        """Whether the primary streams its writes to ``replicas`` (initial sync done)."""
        try:
            client = redis.Redis(LOOPBACK, self.primary(), socket_timeout=1)
            info = client.info("replication")
            client.close()
        except (redis.RedisError, OSError, AssertionError):
            return False
        states = [info.get(f"slave{n}", {}).get("state") for n in range(replicas)]
        return states == ["online"] * replicas

    def _sees(self, port: int, replicas: int) -> bool:
        try:
            client = redis.Redis(LOOPBACK, port, socket_timeout=1)
            known = client.sentinel_slaves(SERVICE)
            others = client.sentinel_sentinels(SERVICE)
            client.close()
        except (redis.RedisError, OSError):
            return False
        assert isinstance(known, list) and isinstance(others, list)
        synced = [replica for replica in known if not replica.get("is_sdown", True)]
        return len(synced) >= replicas and len(others) == len(self.sentinels) - 1


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    """A primary, one replica and three Sentinels watching them, ready; all stopped after."""
    group = SentinelGroup(Path(tempfile.mkdtemp(prefix="callmesh-sentinel-")))
    try:
        primary, replica = free_port(), free_port()
        group.start_server(primary)
        group.start_server(replica, replica_of=primary)
        # Each Sentinel is told its peers and the replica up front (ids chosen here), so the
        # group is ready at once instead of after rounds of hello messages.
        peers = {free_port(): f"{n:040x}" for n in range(1, 4)}
        for port, myid in peers.items():
            config = group.directory / f"sentinel-{port}.conf"
            known = "".join(
                f"sentinel known-sentinel {SERVICE} {LOOPBACK} {other} {other_id}\n"
                for other, other_id in peers.items()
                if other != port
            )
            config.write_text(
                f"port {port}\nbind {LOOPBACK}\nprotected-mode no\ndir {group.directory}\n"
                f"sentinel myid {myid}\n"
                f"sentinel monitor {SERVICE} {LOOPBACK} {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel known-replica {SERVICE} {LOOPBACK} {replica}\n{known}"
            )
            group.sentinels[port] = _spawn(
                ["redis-server", str(config), "--sentinel"],
                group.directory / f"sentinel-{port}.log",
            )
        group.wait_ready(replicas=1)
        yield group
    finally:
        for process in (*group.sentinels.values(), *group.servers.values()):
            stop_process(process, grace=2.0)
        if KEEP is None:
            shutil.rmtree(group.directory, ignore_errors=True)
