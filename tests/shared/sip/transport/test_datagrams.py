"""A socket's datagrams read by `recvmmsg` and sent by `sendmmsg` in C (`_datagrams.c`), and
one `recvmsg` or `sendto` at a time in Python (`datagrams.read_each`, `send_each`): one suite,
run against both, on real sockets.

Both passes of the suite run every case against both languages: the pure-Python pass loads
the C module from the build's file (or compiles it, `tests/shared/sip/accelerators.py`).
A sender returns the index of the first datagram it did not send; the endpoint sends that
one alone by `sendto` (which says why it fails) and goes on after it.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from shared.sip.transport import datagrams
from shared.sip.transport.datagrams import Datagram, Outgoing, read_each, send_each
from tests.shared.sip.accelerators import load
from tests.shared.sip.transport.support import bound, ipv6_available

Reader = Callable[[socket.socket, int], list[Datagram]]
Sender = Callable[[socket.socket, list[Outgoing], int], int]
SOURCE = "shared/sip/transport/_datagrams.c"
VLEN = 16
"""Datagrams per `recvmmsg` in the C reader: bursts around it cross its loop."""
SEND_VLEN = 64
"""Datagrams per `sendmmsg` in the C sender: counts around it cross its loop."""


@pytest.fixture(params=["c", "python"])
def in_c(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "c")


@pytest.fixture
def read(in_c: bool) -> Reader:
    reader: Reader = load(SOURCE).read_datagrams if in_c else read_each
    return reader


@pytest.fixture
def send(in_c: bool) -> Sender:
    sender: Sender = load(SOURCE).send_datagrams if in_c else send_each
    return sender


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


# ----- sending ------------------------------------------------------------------------


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
        ("\udc80", 5060),  # a host that is no text at all (a lone surrogate)
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
