"""Held datagrams sent by `sendmmsg` in C (`_datagrams.c`) and one `sendto` at a time in
Python (`datagrams.send_each`): one suite, run against both, on real sockets.

Each returns the index of the first datagram it did not send; the endpoint sends that one
alone by `sendto` (which says why it fails) and goes on after it.  Both passes of the suite
run every case against both senders (`tests/shared/sip/accelerators.py`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from shared.sip.transport import datagrams
from shared.sip.transport.datagrams import Outgoing, send_each
from tests.shared.sip.accelerators import load
from tests.shared.sip.transport.support import ipv6_available

Sender = Callable[[socket.socket, list[Outgoing], int], int]
SOURCE = "shared/sip/transport/_datagrams.c"
SEND_VLEN = 64
"""Datagrams per `sendmmsg` in the C sender: counts around it cross its loop."""


@pytest.fixture(params=["c", "python"])
def send(request: pytest.FixtureRequest) -> Sender:
    if request.param == "python":
        return send_each
    sender: Sender = load(SOURCE).send_datagrams
    return sender


def bound(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with bound() as sock:
        yield sock


@pytest.fixture
def far_ends() -> Iterator[tuple[socket.socket, socket.socket]]:
    with bound() as first, bound() as second:
        yield first, second


def arrived(sock: socket.socket) -> list[bytes]:
    """What has reached `sock`, after a moment for a loaded kernel's loopback delivery."""
    time.sleep(0.05)
    found = []
    try:
        while True:
            found.append(sock.recv(65535))
    except BlockingIOError:
        return found


def address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


@pytest.mark.parametrize("count", [1, SEND_VLEN - 1, SEND_VLEN, SEND_VLEN + 1, 2 * SEND_VLEN + 9])
def test_every_held_datagram_leaves_in_order(
    send: Sender,
    sender: socket.socket,
    far_ends: tuple[socket.socket, socket.socket],
    count: int,
) -> None:
    first, second = far_ends
    held = [(b"datagram %d " % n + b"x" * n, address(far_ends[n % 3 == 0])) for n in range(count)]
    assert send(sender, held, 0) == count
    assert arrived(first) == [data for data, to in held if to == address(first)]
    assert arrived(second) == [data for data, to in held if to == address(second)]


def test_sending_starts_at_the_index_given(
    send: Sender, sender: socket.socket, far_ends: tuple[socket.socket, socket.socket]
) -> None:
    to = address(far_ends[0])
    held = [(b"%d" % n, to) for n in range(5)]
    assert send(sender, held, 3) == 5
    assert arrived(far_ends[0]) == [b"3", b"4"]
    assert send(sender, held, 9) == 5  # past the end: nothing, as a slice would
    assert send(sender, held, -2) == 5  # before the start: from the first
    assert send(sender, [], 0) == 0
    assert arrived(far_ends[0]) == [b"0", b"1", b"2", b"3", b"4"]


@pytest.mark.parametrize(
    "refused",
    [
        ("127.0.0.1", 70000),  # a port out of range, which sendto raises as OverflowError
        ("127.0.0.1", -1),
        ("127.0.0.1", 0),  # the kernel refuses port 0 (EINVAL)
        ("255.255.255.255", 5060),  # broadcast without SO_BROADCAST (EACCES)
        ("127.0.0.1\0", 5060),  # a host with a NUL in it, which sendto refuses to read
    ],
)
def test_sending_stops_at_a_datagram_refused_and_says_which(
    send: Sender,
    sender: socket.socket,
    far_ends: tuple[socket.socket, socket.socket],
    refused: tuple[str, int],
) -> None:
    """What comes before it leaves, it and what follows do not: the caller sends it alone by
    `sendto` to learn why, then sends the rest from the index after it."""
    to = address(far_ends[0])
    held = [(b"a", to), (b"b", to), (b"refused", refused), (b"c", to)]
    assert send(sender, held, 0) == 2
    assert arrived(far_ends[0]) == [b"a", b"b"]
    assert send(sender, held, 3) == 4
    assert arrived(far_ends[0]) == [b"c"]


def test_a_closed_socket_sends_nothing_and_raises_nothing(
    send: Sender, far_ends: tuple[socket.socket, socket.socket]
) -> None:
    sock = bound()
    sock.close()
    assert send(sock, [(b"a", address(far_ends[0]))], 0) == 0
    assert arrived(far_ends[0]) == []


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6")
def test_an_ipv6_socket_sends_to_ipv6_hosts(send: Sender) -> None:
    with bound("::1") as sender, bound("::1") as far_end:
        held = [(b"six %d" % n, address(far_end)) for n in range(3)]
        assert send(sender, held, 0) == 3
        assert arrived(far_end) == [b"six 0", b"six 1", b"six 2"]


def test_both_senders_deliver_the_same_datagrams(
    sender: socket.socket, far_ends: tuple[socket.socket, socket.socket]
) -> None:
    """Identical input, identical arrivals, the largest datagram included."""
    largest = bytes(range(256)) * 255 + b"\0" * 227  # 65,507 bytes: an IPv4 datagram's most
    held = [(b"", address(far_ends[0])), (largest, address(far_ends[0]))]
    held += [(b"ACK %d" % n, address(far_ends[n % 2])) for n in range(20)]
    results = []
    for sending in (send_each, load(SOURCE).send_datagrams):
        assert sending(sender, held, 0) == len(held)
        results.append((arrived(far_ends[0]), arrived(far_ends[1])))
    assert results[0] == results[1]
    assert results[0][0][:2] == [b"", largest] and len(results[0][1]) == 10


def test_the_build_sends_in_c_and_pure_python_sends_in_python() -> None:
    """Which sender the endpoint's flush uses: the compiled pass's C, or `send_each`."""
    from shared.extensions import STATE

    compiled = STATE.startswith("compiled")
    assert (datagrams.send_datagrams is not send_each) == compiled
