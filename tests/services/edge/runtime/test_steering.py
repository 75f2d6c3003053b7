"""The kernel steering program on real sockets: each datagram reaches its Call-ID's worker.

A datagram is sent to a port that `workers` sockets share, steered by the program as the
edge loads it. `program_reads` says, byte for byte, what the program reads; where it reads
a Call-ID the datagram must reach `WorkerGroup.owner`'s socket, and wherever it reads none
it must still arrive (the kernel's own hash). These tests need ``CAP_BPF`` (root): the
machine that runs ``make test`` has it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.steering import MAX_CALL_ID, MAX_SCAN, create_maps, join
from shared.sip.message import peek_call_id
from tests.shared.sip.torture import DATA

LOOPBACK = "127.0.0.1"
LINEAR = 1500
"""Up to this size a loopback datagram is in one piece, which the program reads; a bigger one
the kernel may keep in page fragments past the UDP header, and then it reads none of it."""


def program_reads(data: bytes) -> bytes | None:
    """The Call-ID the program hashes, or None where it leaves the choice to the kernel: a
    line feed, then ``Call-ID: `` exactly, in the first `MAX_SCAN` bytes and before any blank
    line, with twelve bytes from the line feed on; its value up to a CR or LF, read from at
    most `MAX_CALL_ID` bytes (a NUL, or none of them, and it reads nothing), neither starting
    nor ending with a space or a tab (the workers strip those)."""
    for at in range(MAX_SCAN + 1):
        if at + 12 > len(data):
            return None
        if data[at] != ord("\n"):
            continue
        if data[at + 1 : at + 2] == b"\n" or data[at + 1 : at + 3] == b"\r\n":
            return None
        if data[at + 1 : at + 10] != b"Call-ID: ":
            continue
        window = data[at + 10 : at + 10 + MAX_CALL_ID]
        for end, byte in enumerate(window):
            if byte in b"\r\n":
                value = window[:end]
                return (
                    value
                    if value and value[:1] not in b" \t" and value[-1:] not in b" \t"
                    else None
                )
            if byte == 0:
                return None
        return None
    return None


@contextlib.contextmanager
def shared_port(
    workers: int, joined: int | None = None, host: str = LOOPBACK
) -> Iterator[list[socket.socket]]:
    """`workers` sockets on one port of `host`, the first `joined` (all) in the program's map."""
    maps = create_maps(workers, 1)
    assert maps, "no kernel steering here: these tests need CAP_BPF (run as root)"
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((host, sockets[0].getsockname()[1] if sockets else 0))
            sockets.append(sock)
        for index, sock in enumerate(sockets[: workers if joined is None else joined]):
            join(maps, index, workers, [sock])
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
        for fd in maps:
            os.close(fd)


@pytest.fixture(scope="module")
def three_workers() -> Iterator[list[socket.socket]]:
    """One port of three workers for the many single-datagram tests: the program is verified
    once (about 0.25 s of the kernel's time each), not once a test."""
    with shared_port(3) as sockets:
        yield sockets


def arrival(sockets: list[socket.socket], data: bytes) -> int:
    """Send `data` to the shared port from one socket; the index of the socket it reached."""
    with socket.socket(sockets[0].family, socket.SOCK_DGRAM) as sender:
        sender.sendto(data, sockets[0].getsockname()[:2])
        readable, _, _ = select.select(sockets, [], [], 5)
    assert len(readable) == 1, f"{len(readable)} sockets got {data[:60]!r}"
    assert readable[0].recv(70_000) == data
    return sockets.index(readable[0])


def invite(call_id: bytes, *, padding: int = 0, line: bytes = b"Call-ID: ") -> bytes:
    return (
        b"INVITE sip:14075550001@edge SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        + (b"X-Padding: " + b"p" * padding + b"\r\n" if padding else b"")
        + line
        + call_id
        + b"\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )


def owner(call_id: bytes, workers: int) -> int:
    return WorkerGroup(0, workers, Path("/nonexistent")).owner(call_id)


@pytest.mark.parametrize(
    ("workers", "host"), [(2, LOOPBACK), (3, LOOPBACK), (5, LOOPBACK), (3, "::1")]
)
def test_each_call_reaches_the_worker_owning_its_call_id(workers: int, host: str) -> None:
    """One sender (a trunk): its calls spread over every worker, each on its owner; over
    IPv6 as over IPv4 (the program's data starts at the UDP header either way)."""
    reached = set()
    with shared_port(workers, host=host) as sockets:
        for n in range(60):
            call_id = f"{n * 7919:x}-{n}@198.51.100.{n % 7}".encode()
            data = invite(call_id, padding=(n * 23) % 900)
            assert program_reads(data) == peek_call_id(data) == call_id
            index = arrival(sockets, data)
            assert index == owner(call_id, workers)
            reached.add(index)
    assert reached == set(range(workers))


def _torture_messages() -> list[tuple[str, bytes]]:
    files = sorted((DATA / "rfc4475").glob("*.dat")) + sorted((DATA / "rfc5118" / "crlf").glob("*"))
    return [(path.name, path.read_bytes()) for path in files]


@pytest.mark.parametrize(("name", "data"), _torture_messages())
def test_the_torture_messages_reach_the_owner_of_what_the_program_reads(
    name: str, data: bytes, three_workers: list[socket.socket]
) -> None:
    """Odd spellings, folds, huge headers, no Call-ID: steered where the program reads one,
    and where it does, the same one the workers' own check reads (no needless hand-on)."""
    read = program_reads(data)
    index = arrival(three_workers, data)
    if read is not None:
        assert index == owner(read, 3), name
        if read == read.strip():  # blanks around it: the workers' check strips them
            assert peek_call_id(data) == read, name


def _hostile() -> list[bytes]:
    return [
        b"",
        b"\n",
        b"\nCall-ID: x",  # eleven bytes: too short to look at
        b"\nCall-ID: xy",  # twelve, no line end
        b"\nCall-ID: \r\n" + b"z" * 20,  # an empty value
        b"\n\nCall-ID: after-a-blank-line\r\n",
        b"\r\n\r\nCall-ID: in-the-body\r\n",
        invite(b"nul\x00inside"),
        invite(b"c" * (MAX_CALL_ID - 1)),
        invite(b"c" * MAX_CALL_ID),  # no line end in the bytes it reads
        invite(b"c" * (MAX_CALL_ID + 500)),
        invite(b"lower", line=b"call-id: "),
        invite(b"compact", line=b"i: "),
        invite(b"two-blanks", line=b"Call-ID:  "),
        invite(b"trailing-blank "),
        invite(b"tab\t"),
        invite(b"in side"),
        invite(b"bare\rcarriage-return"),
        invite(b"near-the-bound", padding=MAX_SCAN - 200),
        invite(b"past-the-bound", padding=MAX_SCAN),
        b"\nCall-ID: " + bytes(range(256)) * 4,
        b"\xff" * 1500,
        invite(b"big") + b"b" * 60_000,
        b"x" * 60_000 + b"\nCall-ID: at-the-end\r\n",
    ]


@pytest.mark.parametrize("data", _hostile(), ids=lambda data: repr(data[:40]))
def test_a_datagram_the_program_cannot_read_still_arrives(
    data: bytes, three_workers: list[socket.socket]
) -> None:
    """The program never drops: what it cannot read the kernel spreads by its hash."""
    read = program_reads(data)
    index = arrival(three_workers, data)
    if read is not None and len(data) <= LINEAR:
        assert index == owner(read, 3)


def test_what_the_program_reads_of_the_odd_ones() -> None:
    """The model's answers for the edge cases above (so that it is itself checked)."""
    assert program_reads(invite(b"c" * (MAX_CALL_ID - 1))) == b"c" * (MAX_CALL_ID - 1)
    assert program_reads(invite(b"c" * MAX_CALL_ID)) is None
    assert program_reads(invite(b"trailing-blank ")) is None  # the workers strip blanks
    assert program_reads(invite(b"tab\t")) is None
    assert program_reads(invite(b"two-blanks", line=b"Call-ID:  ")) is None
    assert program_reads(invite(b"in side")) == b"in side"
    assert program_reads(invite(b"compact", line=b"i: ")) is None
    assert program_reads(invite(b"near-the-bound", padding=MAX_SCAN - 200)) == b"near-the-bound"
    assert program_reads(invite(b"past-the-bound", padding=MAX_SCAN)) is None
    assert program_reads(b"\nCall-ID: xy") is None
    assert program_reads(b"\nCall-ID: xy\r") == b"xy"


def test_a_call_of_a_worker_not_in_the_map_reaches_another() -> None:
    """A worker restarting has no socket in the map: its calls' datagrams still arrive
    (the kernel's hash), and its sibling hands them on or handles them."""
    with shared_port(2, joined=1) as sockets:
        for n in range(30):
            call_id = f"absent-{n}".encode()
            data = invite(call_id)
            index = arrival(sockets, data)
            if owner(call_id, 2) == 0:
                assert index == 0


STEER_TWO_SOCKETS = """
import socket
from services.edge.runtime.steering import create_maps, join
maps = create_maps(2, 1)
sockets = []
for _ in range(2):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", sockets[0].getsockname()[1] if sockets else 0))
    sockets.append(sock)
for index, sock in enumerate(sockets):
    join(maps, index, 2, [sock])
print(len(maps))
"""


def steer_with_capabilities(bounding_set: str) -> tuple[str, list[str]]:
    """Run the pool's and the workers' steering set-up with only `bounding_set`'s
    capabilities (as ``setpriv`` sets them); what it printed, and its warnings."""
    command = ["setpriv", f"--bounding-set={bounding_set}", "--inh-caps=-all"]
    result = subprocess.run(
        [*command, sys.executable, "-c", STEER_TWO_SOCKETS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[4],
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "steering" in line]
    return result.stdout.strip(), warnings


def test_without_the_capability_the_pool_hands_on() -> None:
    """No CAP_BPF (a container's default): one log line, no maps, and no error."""
    printed, warnings = steer_with_capabilities("-all")
    assert printed == "0"
    assert len(warnings) == 1


def test_cap_bpf_alone_is_not_enough_and_says_so() -> None:
    """The maps are made, but without CAP_PERFMON the verifier's Spectre hardening refuses
    the scan's packet arithmetic: worker 0 says so in one line, and hands on."""
    printed, warnings = steer_with_capabilities("-all,+bpf")
    assert printed == "1"
    assert len(warnings) == 1
    assert "worker 0" in warnings[0]


def test_cap_bpf_and_cap_perfmon_are_enough() -> None:
    """What a container needs (``cap_add: [BPF, PERFMON]``): no warning at all."""
    printed, warnings = steer_with_capabilities("-all,+bpf,+perfmon")
    assert (printed, warnings) == ("1", [])


def test_the_crc_is_zlibs() -> None:
    """The program's CRC-32 is zlib's, as `WorkerGroup.owner`'s: a value whose CRC has its
    top bit set (the program's arithmetic is 32-bit) lands on its owner too."""
    call_id = next(
        f"top-bit-{n}".encode()
        for n in range(1000)
        if zlib.crc32(f"top-bit-{n}".encode()) >> 31 and zlib.crc32(f"top-bit-{n}".encode()) % 5
    )
    with shared_port(5) as sockets:
        assert arrival(sockets, invite(call_id)) == owner(call_id, 5)
