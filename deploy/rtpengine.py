"""A local rtpengine in user space (no kernel module, no root), for the tests and the benchmark.

``--table=-1`` relays in user space; ``--config-file=none`` keeps the packaged
configuration's fixed ports out (two daemons, or another test run, would
collide); ``--delete-delay=0`` drops a deleted call at once, so a test can
count zero sessions right after its ``delete``. Missing, it fails naming the
package (``deploy/test-packages.txt`` makes ``make test`` install it); a test
never skips for it.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.labs.ports import RTPENGINE_FLOOR, free_port
from deploy.processes import stop_process
from shared.rtpengine.instances import Instance

READY_WITHIN = 30.0
"""Seconds for the daemon to answer a ping: a CI run on two loaded cores saw it log its startup
and still not answer within 10 s."""


@dataclass(frozen=True)
class Daemon:
    instance: Instance
    port_min: int
    port_max: int
    log: Path
    pid: int
    """The daemon's process (its CPU is a benchmark's figure)."""


def _answers_ping(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.sendto(b"ready d7:command4:pinge", (address, port))
        try:
            return probe.recv(256) == b"ready d6:result4:ponge"
        except OSError:
            return False


@contextmanager
def running_rtpengine(
    folder: Path, ports: int = 200, address: str = "127.0.0.1"
) -> Iterator[Daemon]:
    """An rtpengine answering ng on a free port of ``address``, logging into ``folder``, relaying
    on ``ports`` media ports (four per call: RTP and RTCP of each side) of that address (another
    one than loopback: for peers in other network namespaces, deploy/vip/lab.py)."""
    program = shutil.which("rtpengine")
    assert program is not None, "rtpengine is missing: apt-get install -y rtpengine-daemon"
    port = free_port(address)
    port_min = random.randrange(RTPENGINE_FLOOR, 61_000 - ports, 200)
    log = folder / f"rtpengine-{port}.log"
    command = [
        program,
        "--config-file=none",  # not /etc/rtpengine/rtpengine.conf: its ports are shared
        "--table=-1",
        f"--interface={address}",
        f"--listen-ng={address}:{port}",
        f"--listen-cli=127.0.0.1:{free_port()}",  # its default, 2224, is shared
        "--foreground",
        "--log-stderr",
        "--delete-delay=0",
        f"--port-min={port_min}",
        f"--port-max={port_min + ports - 1}",
    ]
    with log.open("wb") as output:
        daemon = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    started = time.time()  # the log's clock: its lines carry epoch seconds
    try:
        deadline = time.monotonic() + READY_WITHIN
        while not _answers_ping(address, port):
            assert daemon.poll() is None, f"rtpengine exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, (
                f"rtpengine started at {started:.3f}, no pong by {time.time():.3f}:"
                f" {log.read_text()[-2000:]}"
            )
        yield Daemon(Instance(address, port), port_min, port_min + ports - 1, log, daemon.pid)
    finally:
        stop_process(daemon, grace=5)
