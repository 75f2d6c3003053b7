"""What the handling of a UDP burst sends goes out after it (`udp.HeldSends`): real sockets.

The burst is read on one endpoint and answered through another, as a worker answers through
its outbound socket; a far end (`observer`) counts what has arrived while the burst is still
being handled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from shared.sip.transport.udp import FLUSH_EVERY, HELD, UdpEndpoint, open_udp
from tests.shared.sip.transport.support import Inbox


@pytest.fixture
def observer() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def arrived(sock: socket.socket) -> list[bytes]:
    """What waits on `sock` now, without waiting for more."""
    found = []
    sock.setblocking(False)
    try:
        while True:
            found.append(sock.recv(65535))
    except BlockingIOError:
        return found


def receive(sock: socket.socket, count: int) -> list[bytes]:
    """`count` datagrams, each within 2 s (loopback delivers them as they are sent)."""
    sock.settimeout(2)
    return [sock.recv(65535) for _ in range(count)]


def to(sock: socket.socket) -> Destination:
    host, port = sock.getsockname()
    return Destination("udp", host, port)


def burst(endpoint: UdpEndpoint, count: int) -> None:
    """`count` datagrams sent while the loop cannot read: one burst when it next can (the
    loop is held a moment more, for a loaded kernel that defers loopback delivery)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for n in range(count):
            client.sendto(b"%d" % n, ("127.0.0.1", endpoint.listener.port))
    time.sleep(0.05)


async def handled(count: int, seen: list[bytes]) -> None:
    for _ in range(500):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(seen)} of {count} datagrams handled")


async def test_a_bursts_answers_leave_after_every_sixteen_and_at_its_end_in_order(
    observer: socket.socket,
) -> None:
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []
    flushed: list[bytes] = []
    early: list[bytes] = []

    def answer(data: bytes, *_: object) -> None:
        if seen and len(seen) % FLUSH_EVERY == 0:
            flushed.extend(receive(observer, FLUSH_EVERY))  # the last sixteen's answers
        early.extend(arrived(observer))  # and nothing beyond them
        seen.append(data)
        out.send(b"re:" + data, to(observer))

    inbound = await open_udp("127.0.0.1", 0, answer)
    count = 2 * FLUSH_EVERY + 5
    burst(inbound, count)
    await handled(count, seen)
    rest = receive(observer, count - len(flushed))
    inbound.close()
    out.close()
    assert early == []
    assert len(flushed) == 2 * FLUSH_EVERY
    assert flushed + rest == [b"re:%d" % n for n in range(count)]


async def test_a_send_outside_a_burst_leaves_at_once(observer: socket.socket) -> None:
    out = await open_udp("127.0.0.1", 0, Inbox())
    out.send(b"now", to(observer))  # no await: nothing would flush a held one
    assert receive(observer, 1) == [b"now"]
    out.close()


async def test_what_an_endpoint_closed_meanwhile_held_is_dropped_quietly(
    observer: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []

    def answer_then_close(data: bytes, *_: object) -> None:
        seen.append(data)
        out.send(b"re:" + data, to(observer))
        out.close()

    inbound = await open_udp("127.0.0.1", 0, answer_then_close)
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        burst(inbound, 1)
        await handled(1, seen)
        await asyncio.sleep(0.05)
    inbound.close()
    assert arrived(observer) == []
    assert caplog.records == []


async def test_a_held_send_the_kernel_refuses_is_logged_at_the_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []

    def answer_nowhere(data: bytes, source: Destination, listener: Listener, *_: object) -> None:
        seen.append(data)
        out.send(b"re:" + data, Destination("udp", "255.255.255.255", 5060))  # no SO_BROADCAST

    inbound = await open_udp("127.0.0.1", 0, answer_nowhere)
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        burst(inbound, 3)
        await handled(3, seen)
    inbound.close()
    out.close()
    refused = [r for r in caplog.records if "Permission denied" in r.getMessage()]
    assert len(refused) == 1  # three refused, one line (throttled)


async def test_an_address_refused_at_the_flush_costs_only_its_datagram(
    observer: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A port out of range, which an immediate send raises to its caller, is found only at
    the flush: logged, and the other held datagrams and the next bursts go out."""
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []

    def answer_one_badly(data: bytes, *_: object) -> None:
        seen.append(data)
        port = 70000 if data == b"1" else observer.getsockname()[1]
        out.send(b"re:" + data, Destination("udp", "127.0.0.1", port))

    inbound = await open_udp("127.0.0.1", 0, answer_one_badly)
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        burst(inbound, 3)
        await handled(3, seen)
        assert receive(observer, 2) == [b"re:0", b"re:2"]
        burst(inbound, 1)
        await handled(4, seen)
        assert receive(observer, 1) == [b"re:0"]
    inbound.close()
    out.close()
    [line] = [r.getMessage() for r in caplog.records]
    assert "a held datagram to ('127.0.0.1', 70000) not sent" in line


async def test_what_must_be_written_first_is_written_before_any_held_datagram_leaves(
    observer: socket.socket,
) -> None:
    """The outbox journal's place (`HeldSends.write_ahead`): the burst's events on disk
    first, so a process killed in between has sent nothing they cover."""
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []
    there_at_write: list[list[bytes]] = []

    class Journal:
        def flush(self) -> None:
            time.sleep(0.02)  # what had been sent would have arrived by now
            there_at_write.append(arrived(observer))

    journal = Journal()

    def journal_then_answer(data: bytes, *_: object) -> None:
        seen.append(data)
        if journal not in HELD.write_ahead:
            HELD.write_ahead.append(journal)
        out.send(b"re:" + data, to(observer))

    inbound = await open_udp("127.0.0.1", 0, journal_then_answer)
    burst(inbound, 3)
    await handled(3, seen)
    answers = receive(observer, 3)
    inbound.close()
    out.close()
    assert there_at_write == [[]]  # written once, before any of the three left
    assert answers == [b"re:0", b"re:1", b"re:2"]


async def test_a_writer_ahead_that_fails_is_logged_and_the_held_datagrams_still_leave(
    observer: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    out = await open_udp("127.0.0.1", 0, Inbox())
    seen: list[bytes] = []

    class Broken:
        def flush(self) -> None:
            raise OSError(5, "Input/output error")

    def journal_then_answer(data: bytes, *_: object) -> None:
        seen.append(data)
        HELD.write_ahead.append(Broken())
        out.send(b"re:" + data, to(observer))

    inbound = await open_udp("127.0.0.1", 0, journal_then_answer)
    with caplog.at_level(logging.INFO, logger="shared.sip.transport.udp"):
        burst(inbound, 2)
        await handled(2, seen)
        assert receive(observer, 2) == [b"re:0", b"re:1"]
    inbound.close()
    out.close()
    assert HELD.write_ahead == [] and HELD.waiting == []
    assert [r.getMessage() for r in caplog.records] == [
        "udp: writing ahead of held datagrams failed: [Errno 5] Input/output error"
    ] * 2
