"""A real DNS server for the tests: dnsmasq on loopback, on a free port, serving only its records.

`--no-resolv --no-hosts --local=/test/` keep it from forwarding or reading the
machine's files: a name under `.test` it was not given is NXDOMAIN. Records are
given on its command line; a change of records (or TTL) is a restart on the same
port (`Dnsmasq.restart`), which is what an operator's DNS change looks like from
the edge: the next query gets the new answer.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deploy.labs.ports import free_port
from deploy.processes import stop_process


@dataclass(frozen=True, slots=True)
class Zone:
    """What dnsmasq serves: `srv` (name, target, port, priority, weight), `naptr` (name,
    order, preference, service, replacement: flag `S`), `hosts` (name, addresses), one TTL."""

    srv: tuple[tuple[str, str, int, int, int], ...] = ()
    naptr: tuple[tuple[str, int, int, str, str], ...] = ()
    hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ttl: int = 60

    def arguments(self) -> list[str]:
        args = [f"--local-ttl={self.ttl}"]
        for name, target, port, priority, weight in self.srv:
            args.append(f"--srv-host={name},{target},{port},{priority},{weight}")
        for name, order, preference, service, replacement in self.naptr:
            args.append(f"--naptr-record={name},{order},{preference},S,{service},,{replacement}")
        for name, addresses in self.hosts:
            args.append(f"--host-record={name},{','.join(addresses)}")
        return args


@dataclass(slots=True)
class Dnsmasq:
    port: int
    directory: Path
    zone: Zone
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def servers(self) -> str:
        """The value of `CALLMESH_DNS_SERVERS` that points at it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        log = (self.directory / "dnsmasq.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                "-k",
                f"--port={self.port}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--local=/test/",
                f"--pid-file={self.directory / 'dnsmasq.pid'}",
                *self.zone.arguments(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def restart(self, zone: Zone) -> None:
        """Serve `zone` from now on, on the same port."""
        self.stop()
        self.zone = zone
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def _wait_ready(self) -> None:
        """Until it answers a query (any answer), within 10 s."""
        query = bytes.fromhex("abcd01000001000000000000") + b"\x05ready\x04test\x00\x00\x01\x00\x01"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    log = (self.directory / "dnsmasq.log").read_text(errors="replace")
                    raise RuntimeError(f"dnsmasq exited: {log[-2000:]}")
                sock.sendto(query, ("127.0.0.1", self.port))
                try:
                    sock.recv(512)
                    return
                except OSError:
                    continue
        raise RuntimeError(f"dnsmasq did not answer on 127.0.0.1:{self.port} within 10 s")


@contextmanager
def dnsmasq(zone: Zone) -> Iterator[Dnsmasq]:
    with tempfile.TemporaryDirectory(prefix="callmesh-dns-") as directory:
        server = Dnsmasq(free_port(), Path(directory), zone)
        server.start()
        try:
            yield server
        finally:
            server.stop()
