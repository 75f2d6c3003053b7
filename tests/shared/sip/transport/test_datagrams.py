"""A socket's waiting datagrams read by `recvmmsg` in C (`_datagrams.c`) and one `recvmsg` at a
time in Python (`datagrams.read_each`): one suite, run against both, on real sockets.

Both passes of the suite run every case against both readers: the pure-Python pass loads
the C module from the build's file (or compiles it, `tests/shared/sip/accelerators.py`).
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from shared.sip.transport import datagrams
from shared.sip.transport.datagrams import SO_TIMESTAMPNS, Datagram, read_each
from tests.shared.sip.accelerators import load
from tests.shared.sip.transport.support import ipv6_available

Reader = Callable[[socket.socket, int], list[Datagram]]
SOURCE = "shared/sip/transport/_datagrams.c"
VLEN = 16
"""Datagrams per `recvmmsg` in the C reader: bursts around it cross its loop."""


@pytest.fixture(params=["c", "python"])
def read(request: pytest.FixtureRequest) -> Reader:
    if request.param == "python":
        return read_each
    reader: Reader = load(SOURCE).read_datagrams
    return reader


def bound(host: str = "127.0.0.1", *, stamped: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if stamped:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with bound() as sock:
        yield sock


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def send_all(sender: socket.socket, receiver: socket.socket, payloads: list[bytes]) -> None:
    """Send `payloads`, then give a loaded kernel time to queue them all (loopback usually
    delivers within `sendto`, but a busy machine may defer it)."""
    for payload in payloads:
        sender.sendto(payload, receiver.getsockname()[:2])
    time.sleep(0.05)


def test_an_empty_socket_is_an_empty_burst_not_an_error(
    read: Reader, receiver: socket.socket
) -> None:
    assert read(receiver, 64) == []


@pytest.mark.parametrize("count", [1, VLEN - 1, VLEN, VLEN + 1, 3 * VLEN + 5, 64 + 9])
def test_a_burst_comes_whole_in_order_from_its_source_stamped_by_the_kernel(
    read: Reader, receiver: socket.socket, sender: socket.socket, count: int
) -> None:
    before = time.time()
    payloads = [b"datagram %d " % n + b"x" * n for n in range(count)]
    send_all(sender, receiver, payloads)
    after = time.time()
    burst = read(receiver, 64)
    assert [data for data, _, _, _ in burst] == payloads[:64]
    assert {(host, port) for _, host, port, _ in burst} == {sender.getsockname()}
    assert all(before - 0.002 <= stamp <= after + 0.002 for _, _, _, stamp in burst)
    assert [data for data, _, _, _ in read(receiver, 64)] == payloads[64:]


@pytest.mark.parametrize("limit", [1, 5, VLEN, VLEN + 3])
def test_no_more_than_the_limit_is_read_and_the_rest_waits(
    read: Reader, receiver: socket.socket, sender: socket.socket, limit: int
) -> None:
    payloads = [b"%d" % n for n in range(2 * VLEN + 7)]
    send_all(sender, receiver, payloads)
    first = read(receiver, limit)
    rest = read(receiver, 1000)
    assert [data for data, *_ in first] == payloads[:limit]
    assert [data for data, *_ in rest] == payloads[limit:]


def test_a_zero_limit_reads_nothing(
    read: Reader, receiver: socket.socket, sender: socket.socket
) -> None:
    send_all(sender, receiver, [b"waiting"])
    assert read(receiver, 0) == []
    assert [data for data, *_ in read(receiver, 1)] == [b"waiting"]


def test_empty_and_largest_datagrams_come_as_sent(
    read: Reader, receiver: socket.socket, sender: socket.socket
) -> None:
    largest = bytes(range(256)) * 255 + b"\0" * 227  # 65,507 bytes: an IPv4 datagram's most
    send_all(sender, receiver, [b"", largest, b"\r\n\r\n"])
    assert [data for data, *_ in read(receiver, 64)] == [b"", largest, b"\r\n\r\n"]


def test_without_kernel_stamps_the_stamp_is_zero(read: Reader, sender: socket.socket) -> None:
    with bound(stamped=False) as receiver:
        send_all(sender, receiver, [b"a", b"b"])
        assert [stamp for *_, stamp in read(receiver, 64)] == [0.0, 0.0]


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6")
def test_an_ipv6_source_is_its_host_and_port(read: Reader) -> None:
    with bound("::1") as receiver, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
        sender.bind(("::1", 0))
        sender.sendto(b"six", receiver.getsockname()[:2])
        [(data, host, port, stamp)] = read(receiver, 64)
        assert (data, host, port) == (b"six", "::1", sender.getsockname()[1])
    assert stamp > 0


def test_both_readers_give_the_same_burst(sender: socket.socket) -> None:
    """Identical input, identical output (the stamps differ only by when each was sent)."""
    payloads = [b"INVITE %d" % n for n in range(40)]
    results = []
    for reader in (read_each, load(SOURCE).read_datagrams):
        with bound() as receiver:
            send_all(sender, receiver, payloads)
            results.append([(data, host, port) for data, host, port, _ in reader(receiver, 64)])
    assert results[0] == results[1] == [(p, *sender.getsockname()) for p in payloads]


def test_an_error_before_any_datagram_is_raised_as_the_kernel_gave_it(read: Reader) -> None:
    """An unconnected stream socket: the kernel refuses to read it at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
        stream.setblocking(False)
        with pytest.raises(OSError) as raised:
            read(stream, 64)
    assert raised.value.errno == errno.ENOTCONN


def test_a_closed_socket_is_a_bad_descriptor(read: Reader) -> None:
    """As its `recvmsg` says (its `fileno()` is -1): the endpoint logs OSErrors."""
    sock = bound()
    sock.close()
    with pytest.raises(OSError) as raised:
        read(sock, 64)
    assert raised.value.errno == errno.EBADF


def test_a_source_without_an_ip_address_is_blank(read: Reader) -> None:
    """A Unix datagram socket's peer (no address, here): `""` and 0, never a stale one."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        right.setblocking(False)
        left.send(b"local")
        time.sleep(0.05)
        assert read(right, 64) == [(b"local", "", 0, 0.0)]


def test_the_limit_is_any_index_as_range_takes_it(
    read: Reader, receiver: socket.socket, sender: socket.socket
) -> None:
    send_all(sender, receiver, [b"a", b"b", b"c"])
    assert [data for data, *_ in read(receiver, True)] == [b"a"]  # bool is an int
    assert [data for data, *_ in read(receiver, 2**70)] == [b"b", b"c"]


def test_the_build_reads_in_c_and_pure_python_reads_in_python() -> None:
    """Which reader the endpoint uses: the compiled pass's C, or `read_each` without it."""
    from shared.extensions import STATE

    compiled = STATE.startswith("compiled")
    assert (datagrams.read_datagrams is not read_each) == compiled
