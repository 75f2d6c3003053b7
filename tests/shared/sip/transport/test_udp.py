"""UDP adapter on loopback: real sockets, IPv4 and IPv6."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

import pytest
import uvloop
from prometheus_client import REGISTRY
from pydantic import ValidationError

from shared.settings import Settings
from shared.sip.transport.base import (
    BindError,
    OversizeDatagramError,
    TransportError,
    TransportLimits,
    limits_of,
)
from shared.sip.transport.destination import Destination
from shared.sip.transport.udp import BURST, MAX_QUEUED_AGE, UdpEndpoint, clamped, open_udp
from tests.shared.sip.transport.support import OK, OPTIONS, Inbox, ipv6_available

HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6")),
]


@pytest.mark.parametrize("host", HOSTS)
async def test_datagram_reaches_the_handler_and_the_answer_goes_back(host: str) -> None:
    inbox = Inbox()
    endpoint = await open_udp(host, 0, inbox)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.bind((host, 0))
        client.settimeout(5)
        client.sendto(OPTIONS, (host, endpoint.listener.port))
        data, source, listener = await inbox.get()
        assert data == OPTIONS
        assert source == Destination("udp", host, client.getsockname()[1])
        assert (listener.transport, listener.host) == ("udp", host)
        endpoint.send(OK, source)
        answer = await asyncio.get_running_loop().run_in_executor(None, client.recv, 65535)
        assert answer == OK
    endpoint.close()


async def test_keepalives_and_oversized_datagrams_are_dropped() -> None:
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox, TransportLimits(max_message_size=200))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        address = ("127.0.0.1", endpoint.listener.port)
        client.sendto(b"\r\n\r\n", address)
        client.sendto(b"X" * 201, address)
        client.sendto(OPTIONS[:150], address)
        data, _, _ = await inbox.get()
    assert data == OPTIONS[:150]
    assert inbox.queue.empty()
    endpoint.close()


async def test_receive_buffer_is_enlarged() -> None:
    endpoint = await open_udp("127.0.0.1", 0, Inbox())
    sock = endpoint.socket
    # Linux doubles the request and caps it at rmem_max; either way above its 208 KiB default.
    default = 212992
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(default, 2 * 4 * 1024 * 1024)
    endpoint.close()


def counted(kind: str) -> float:
    return REGISTRY.get_sample_value("callmesh_sip_udp_oversize_total", {"kind": kind}) or 0.0


async def test_a_message_over_a_datagram_is_refused_naming_the_peer() -> None:
    """It once was an info line from `error_received`, without the peer."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        peer = Destination("udp", "127.0.0.1", client.getsockname()[1])
        before = counted("response")
        with pytest.raises(OversizeDatagramError) as caught:
            endpoint.send(b"SIP/2.0 200 OK\r\n" + b"x" * 65_492, peer)
        assert str(caught.value) == (
            f"udp: 65508-byte response to 127.0.0.1:{peer.port} is over the 65507 bytes "
            "a datagram holds"
        )
        assert counted("response") == before + 1
        endpoint.send(b"y" * 65_507, peer)  # the largest that fits does go
        client.settimeout(5)
        received = await asyncio.get_running_loop().run_in_executor(None, client.recv, 70_000)
        assert len(received) == 65_507
    endpoint.close()


async def test_a_port_in_use_is_named_in_the_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(BindError) as caught:
            await open_udp("127.0.0.1", port, Inbox())
    assert str(caught.value) == f"udp:127.0.0.1:{port}: address already in use"
    assert caught.value.errno == errno.EADDRINUSE


async def test_reuse_port_lets_two_endpoints_share_a_port() -> None:
    """The edge's workers share their listening ports (SO_REUSEPORT); without it, refused."""
    first = await open_udp("127.0.0.1", 0, Inbox(), reuse_port=True)
    port = first.listener.port
    second = await open_udp("127.0.0.1", port, Inbox(), reuse_port=True)
    assert second.listener.port == port
    with pytest.raises(BindError):
        await open_udp("127.0.0.1", port, Inbox())
    first.close()
    second.close()


def hold_the_loop(seconds: float) -> None:
    """What a loaded worker does to its loop: nothing else runs meanwhile."""
    time.sleep(seconds)


async def exchange_on_a_late_loop(host: str) -> tuple[float, float]:
    """(when a datagram was sent, when its handler was told it arrived), both on the loop's
    clock, the loop kept busy (`time.sleep`) for 300 ms between the two."""
    inbox = Inbox()
    endpoint = await open_udp(host, 0, inbox)
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        sent_at = loop.time()
        client.sendto(OPTIONS, (host, endpoint.listener.port))
        hold_the_loop(0.3)  # the datagram waits in the kernel
        data, _, _ = await inbox.get()
    endpoint.close()
    assert data == OPTIONS
    [received_at] = inbox.received_at
    return sent_at, received_at


@pytest.mark.parametrize("host", HOSTS)
async def test_a_datagram_is_timed_by_the_kernel_not_by_a_late_loop(host: str) -> None:
    sent_at, received_at = await exchange_on_a_late_loop(host)
    assert sent_at - 0.002 <= received_at <= sent_at + 0.02


def test_a_datagram_is_timed_by_the_kernel_on_uvloop() -> None:
    """The edge's loop: its clock counts milliseconds, hence the millisecond below."""
    sent_at, received_at = uvloop.run(exchange_on_a_late_loop("127.0.0.1"))
    assert sent_at - 0.002 <= received_at <= sent_at + 0.02


async def test_the_longest_wait_in_the_buffer_is_kept_until_taken() -> None:
    """What a datagram waited in the kernel while the loop was busy: the backlog a loop
    reading full bursts hides from its lag (recorded by `services.edge.runtime.loop_probe`)."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        hold_the_loop(0.3)
        await inbox.get()
        assert endpoint.take_longest_wait() >= 0.25
        assert endpoint.take_longest_wait() == 0.0
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        await inbox.get()
    endpoint.close()
    assert endpoint.longest_wait < 0.25


async def test_the_shortest_wait_is_of_the_datagram_that_waited_least() -> None:
    """Two datagrams read in one wake-up, one sent before the loop was held and one after: the
    longest wait is the first's, the shortest the second's (high only while every datagram
    waits, the standing queue `services.edge.policy.overload` sheds on)."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox)
    assert endpoint.take_shortest_wait() == 0.0  # none read
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        hold_the_loop(0.3)
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        await inbox.get()
        await inbox.get()
        assert endpoint.take_longest_wait() >= 0.25
        assert endpoint.take_shortest_wait() < 0.2
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        hold_the_loop(0.3)
        await inbox.get()
        assert endpoint.take_shortest_wait() >= 0.25
        assert endpoint.take_shortest_wait() == 0.0
    endpoint.close()


async def test_a_burst_is_read_in_one_wake_up() -> None:
    """A burst of datagrams costs one wake-up, not one each."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox)
    wake_ups = 0
    read = endpoint._readable

    def counted() -> None:
        nonlocal wake_ups
        wake_ups += 1
        read()

    loop = asyncio.get_running_loop()
    loop.remove_reader(endpoint.socket.fileno())
    loop.add_reader(endpoint.socket.fileno(), counted)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(BURST):
            client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        for _ in range(BURST):
            await inbox.get()
    endpoint.close()
    assert wake_ups == 1


async def test_a_handler_that_closes_the_endpoint_is_given_no_more_of_its_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The burst is read before it is handled: what a closed endpoint still holds of it is
    dropped, as its socket's buffer is, quietly."""
    handled: list[bytes] = []
    endpoint: UdpEndpoint | None = None

    def closing(data: bytes, *_: object) -> None:
        handled.append(data)
        assert endpoint is not None
        endpoint.close()

    endpoint = await open_udp("127.0.0.1", 0, closing)
    with (
        caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        for n in range(3):
            client.sendto(OPTIONS + b"%d" % n, ("127.0.0.1", endpoint.listener.port))
        hold_the_loop(0.05)  # all three wait in the buffer: one burst
        for _ in range(20):
            await asyncio.sleep(0.01)
    assert handled == [OPTIONS + b"0"]
    assert caplog.records == []


async def test_a_send_the_kernel_refuses_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As the asyncio transports did: the transaction's timers deal with the loss."""
    endpoint = await open_udp("127.0.0.1", 0, Inbox())
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        endpoint.send(OK, Destination("udp", "255.255.255.255", 5060))  # no SO_BROADCAST
    endpoint.close()
    assert "to 255.255.255.255: [Errno 13] Permission denied" in caplog.text


async def test_a_closed_endpoint_refuses_to_send() -> None:
    endpoint = await open_udp("127.0.0.1", 0, Inbox())
    endpoint.close()
    endpoint.close()  # twice: harmless
    with pytest.raises(TransportError, match="is closed"):
        endpoint.send(OK, Destination("udp", "127.0.0.1", 5060))


def test_a_stamp_across_a_wall_clock_step_is_kept_within_bounds() -> None:
    """Stamp and offset are wall-clock readings: a step between them moves the stamp."""
    assert clamped(99.5, 100.0) == 99.5
    assert clamped(100.5, 100.0) == 100.0  # never after it was read
    assert clamped(100.0 - MAX_QUEUED_AGE - 3600, 100.0) == 100.0 - MAX_QUEUED_AGE


async def test_a_flood_of_oversized_datagrams_is_one_log_line_and_the_socket_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any host can send them at any rate: a line each would flood the log."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox, TransportLimits(max_message_size=200))
    with (
        caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        address = ("127.0.0.1", endpoint.listener.port)
        for _ in range(50):
            client.sendto(b"X" * 201, address)
        client.sendto(OPTIONS[:150], address)
        data, _, _ = await inbox.get()
    endpoint.close()
    assert data == OPTIONS[:150]
    dropped = [r for r in caplog.records if "dropped a 201-byte datagram" in r.getMessage()]
    assert len(dropped) == 1


async def test_sends_the_kernel_refuses_again_and_again_are_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = await open_udp("127.0.0.1", 0, Inbox())
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        for _ in range(50):
            endpoint.send(OK, Destination("udp", "255.255.255.255", 5060))
    endpoint.close()
    assert len([r for r in caplog.records if "Permission denied" in r.getMessage()]) == 1


def coalescing(milliseconds: int) -> TransportLimits:
    """`CALLMESH_UDP_COALESCE_MS` as the edge reads it."""
    return limits_of(Settings(udp_coalesce_ms=milliseconds))


async def test_what_comes_while_the_socket_rests_is_read_as_one_burst_after_it() -> None:
    """The first datagram is handled at once; the two sent right after wait out the rest and
    are handled in one wake-up, timed by the kernel when they came; the rest is not taken
    for a queue standing in the socket."""
    handled: list[tuple[bytes, float, float]] = []
    first, done = asyncio.Event(), asyncio.Event()

    def handler(data: bytes, _source: object, _listener: object, received_at: float) -> None:
        handled.append((data, time.monotonic(), received_at))
        first.set()
        if len(handled) == 3:
            done.set()

    endpoint = await open_udp("127.0.0.1", 0, handler, TransportLimits(udp_coalesce=0.3))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(OPTIONS + b"0", ("127.0.0.1", endpoint.listener.port))
        await asyncio.wait_for(first.wait(), 5)
        endpoint.take_shortest_wait()
        client.sendto(OPTIONS + b"1", ("127.0.0.1", endpoint.listener.port))
        client.sendto(OPTIONS + b"2", ("127.0.0.1", endpoint.listener.port))
        await asyncio.wait_for(done.wait(), 5)
    standing = endpoint.take_shortest_wait()
    endpoint.close()
    (_, first_at, first_came), (_, second_at, second_came), (_, third_at, _) = handled
    assert [data[-1:] for data, _, _ in handled] == [b"0", b"1", b"2"]
    assert first_at - first_came < 0.2
    assert second_at - first_at >= 0.25
    assert third_at - second_at < 0.1
    assert second_at - second_came >= 0.1  # it waited in the socket (margin for a slow sender)
    assert standing < 0.2


async def test_a_full_burst_is_not_followed_by_a_rest() -> None:
    """A burst of `BURST` leaves more waiting: read at the loop's next turn, not a rest later."""
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox, TransportLimits(udp_coalesce=5.0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(BURST + 3):
            client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        for _ in range(BURST + 3):
            await asyncio.wait_for(inbox.get(), 2)
    endpoint.close()


async def test_an_endpoint_closed_while_resting_is_not_read_again() -> None:
    inbox = Inbox()
    endpoint = await open_udp("127.0.0.1", 0, inbox, TransportLimits(udp_coalesce=5.0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(OPTIONS, ("127.0.0.1", endpoint.listener.port))
        await inbox.get()
    resting = endpoint._resume
    endpoint.close()
    assert resting is not None and resting.cancelled()


def test_the_rest_is_read_from_the_settings_and_bounded() -> None:
    assert limits_of(Settings()).udp_coalesce == 0.0
    assert coalescing(5).udp_coalesce == pytest.approx(0.005)
    for wrong in (-1, 101, 2.5):
        with pytest.raises(ValidationError):
            Settings(udp_coalesce_ms=wrong)
