"""Free ports for the processes a test, a lab or a benchmark starts."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
CLAIMS_VARIABLE = "CALLMESH_PORTS_DIR"
"""A directory shared by concurrent runs (`make test`'s two pytest processes): each port
handed out is claimed there by a file of its number, created exclusively, so no two
processes are ever handed the same port.  Unset: the memory of this process alone."""
FLOOR = 10_000
"""The lowest port handed out: below are the well-known and registered services' ports."""
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_HANDED_OUT: set[int] = set()
"""Every port `free_port` has returned (or seen claimed) in this process: never returned."""


def handout_range() -> range:
    """The ports `free_port` draws from: those the kernel never picks by itself.

    Why not the kernel's pick (`bind(port 0)`): a port handed out is free only until its
    process binds it, and in between any socket that connects without binding takes a
    local port from the kernel's ephemeral range.  A CI run lost a lab's edge this way:
    its HTTP port, handed out from that range, was taken by one of the edge's own links to
    Redis or RabbitMQ, made before its HTTP server bound.  Ports outside the range are
    taken only by an explicit bind: by a system service (seen by the test bind) or by a
    port handed out here (claimed).
    """
    low, high = map(int, _EPHEMERAL_RANGE.read_text().split())
    below, above = range(FLOOR, low), range(high + 1, 65_536)
    return below if len(below) >= len(above) else above


RTPENGINE_FLOOR = 40_000
"""The lowest media port a test's rtpengine takes (deploy/rtpengine.py)."""


def phone_rtp_ports() -> str:
    """``low-high``: the RTP ports of the phones the tests start (baresip's `rtp_ports`).

    Why: a phone's own default (1024-49152, picked at random) overlaps the ports `free_port`
    hands out.  A dry run of CI lost a test, most likely that way: its gateway's port, handed
    out and not yet bound, was held for a moment by another process (a phone of the other
    shard's baresip tests was the one picking random ports then), and the SIPp started on it
    failed to bind.  The kernel's ephemeral range is never handed out, and below rtpengine's media
    ports no test's media port is taken either; a phone meeting the kernel's own pick there
    tries another port.
    """
    low, high = map(int, _EPHEMERAL_RANGE.read_text().split())
    top = RTPENGINE_FLOOR - 1 if low < RTPENGINE_FLOOR <= high else high
    return f"{low}-{top}"


def free_port(host: str = LOOPBACK) -> int:
    """A port of `host` free on both UDP and TCP right now, outside the kernel's ephemeral
    range, and never handed out before in this run.

    Why the memory: processes are started one after another before any binds, and two
    processes given one port made a test talk to the wrong one (a CI run's all-in-one
    lost its HTTP port to an edge started just before it, and the edge answered for it).
    The same holds between two test runs side by side: hence the claims of
    ``CALLMESH_PORTS_DIR``, which every process started from the run inherits.
    """
    ports = handout_range()
    for _ in range(len(ports)):
        port = random.choice(ports)
        if port in _HANDED_OUT or not _bindable(host, port):
            continue
        _HANDED_OUT.add(port)
        if _claimed(port):
            return port
    raise RuntimeError(f"no free port left in {ports.start}-{ports.stop - 1} on {host}")


def _bindable(host: str, port: int) -> bool:
    """True if nothing holds `port` of `host` on UDP nor TCP (a lingering TCP close included)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def _claimed(port: int) -> bool:
    """True if this process now holds `port`: no claims directory, or its claim file made here."""
    folder = os.environ.get(CLAIMS_VARIABLE)
    if not folder:
        return True
    claim = Path(folder) / str(port)
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(handle, f"{os.getpid()}\n".encode())  # who holds it, for a port clash's cause
        os.close(handle)
    except FileExistsError:
        if claim.parent.is_dir():
            return False
        raise RuntimeError(f"{CLAIMS_VARIABLE}={folder} is not a directory") from None
    except OSError as error:
        raise RuntimeError(f"{CLAIMS_VARIABLE}={folder}: {error.strerror}") from None
    return True
