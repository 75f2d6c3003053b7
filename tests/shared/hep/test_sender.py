"""The HEP sender on local sockets: UDP and TCP collectors, a full queue, a down collector."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from deploy.labs.ports import free_port
from shared.hep import metrics
from shared.hep.codec import packet_length
from shared.hep.destination import HepDestination, parse_destinations
from shared.hep.sender import HepSender
from tests.shared.bus.support import until


def packet(n: int) -> bytes:
    body = b"%06d" % n
    return b"HEP3" + (6 + len(body)).to_bytes(2, "big") + body


def test_destinations_parse_and_name_what_is_wrong() -> None:
    assert parse_destinations("udp:10.0.0.9:9060, tcp:[2001:db8::9]:9061,") == [
        HepDestination("udp", "10.0.0.9", 9060),
        HepDestination("tcp", "2001:db8::9", 9061),
    ]
    assert str(HepDestination("tcp", "2001:db8::9", 9061)) == "tcp:[2001:db8::9]:9061"
    assert parse_destinations("") == []
    for bad in ("sctp:10.0.0.9:9060", "udp:10.0.0.9", "udp:10.0.0.9:0", "udp::9060", "udp:h:x"):
        with pytest.raises(ValueError, match="HEP destination"):
            HepDestination.parse(bad)


async def test_udp_collector_gets_every_packet_in_order() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.setblocking(False)
        port = collector.getsockname()[1]
        sender = HepSender([HepDestination("udp", "127.0.0.1", port)])
        sent = metrics.SENT.value
        for n in range(50):
            sender.offer(packet(n))
        got: list[bytes] = []
        loop = asyncio.get_running_loop()
        while len(got) < 50:
            got.append(await asyncio.wait_for(loop.sock_recv(collector, 100), 5))
        assert got == [packet(n) for n in range(50)]
        assert metrics.SENT.value - sent == 50
        await sender.stop()


async def test_tcp_collector_reads_whole_packets_back_to_back() -> None:
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HepSender([HepDestination("tcp", "127.0.0.1", port)])
    target = sender._targets[0]
    await until(lambda: getattr(target, "transport", None) is not None)
    for n in range(20):
        sender.offer(packet(n))
    await until(lambda: len(received) == 20 * 12)
    frames, data = [], bytes(received)
    while data:
        length = packet_length(data)
        assert length is not None
        frames.append(data[:length])
        data = data[length:]
    assert frames == [packet(n) for n in range(20)]
    await sender.stop()
    server.close()
    await server.wait_closed()


async def test_a_full_queue_drops_counts_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        sender = HepSender(
            [HepDestination("udp", "127.0.0.1", collector.getsockname()[1])], queue_size=5
        )
        before = metrics.DROPPED.get("queue_full", 0)
        with caplog.at_level(logging.WARNING, "callmesh.hep"):
            for n in range(8):
                sender.offer(packet(n))  # the loop does not run between: the queue fills
        assert metrics.DROPPED["queue_full"] - before == 3
        assert [r.getMessage() for r in caplog.records] == [
            "HEP: queue of 5 packets full; dropping"
        ]
        await sender.stop()


async def test_a_down_tcp_collector_costs_drops_never_a_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        sender = HepSender([HepDestination("tcp", "127.0.0.1", port)])
        before = metrics.DROPPED.get("down", 0)
        with caplog.at_level(logging.WARNING, "callmesh.hep"):
            for n in range(10):
                sender.offer(packet(n))
                await asyncio.sleep(0)
            await until(lambda: metrics.DROPPED.get("down", 0) - before == 10)
        lines = [r.getMessage() for r in caplog.records]
        assert lines == [f"HEP to tcp:127.0.0.1:{port}: collector down; dropping"]
        await sender.stop()


async def test_a_down_udp_collector_is_left_alone_until_the_retry() -> None:
    """Once the kernel says the port is closed, a flush's packets are dropped unsent (each
    would only be refused again) until `RECONNECT_INTERVAL` has passed; then sent again."""
    port = _closed_udp_port()
    sender = HepSender([HepDestination("udp", "127.0.0.1", port)])
    before = metrics.DROPPED.get("down", 0)
    sender.offer(packet(0))
    sender.offer(packet(1))
    sender.flush()  # the first leaves, the kernel refuses the second (ICMP from the first)
    assert metrics.DROPPED.get("down", 0) - before == 1
    for n in range(100):
        sender.offer(packet(n))
    sender.flush()
    assert metrics.DROPPED.get("down", 0) - before == 101  # every one, none half sent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", port))  # back
        collector.setblocking(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            sender.offer(packet(7))
            sender.flush()
            try:
                assert await asyncio.wait_for(loop.sock_recv(collector, 100), 0.2) == packet(7)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no packet reached the collector once it was back")
    await sender.stop()


def _closed_udp_port() -> int:
    """Outside the ephemeral range: no socket of this machine takes it while the test runs."""
    return free_port()


async def test_while_every_collector_is_down_packets_are_counted_not_made() -> None:
    """Once the only collector is known down, `taking` refuses each packet before it is
    encoded (counting it dropped, as a flush would have) until the retry is due."""
    sender = HepSender([HepDestination("udp", "127.0.0.1", _closed_udp_port())])
    assert sender.taking()
    before = metrics.DROPPED.get("down", 0)
    sender.offer(packet(0))
    sender.offer(packet(1))
    sender.flush()  # the second refused: the collector is down until the retry
    assert metrics.DROPPED.get("down", 0) - before == 1
    refused = [sender.taking() for _ in range(10)]
    assert refused == [False] * 10
    assert metrics.DROPPED.get("down", 0) - before == 11  # one a refused packet
    await until(sender.taking)  # the retry: packets are made and sent again
    await sender.stop()


async def test_one_live_collector_keeps_packets_coming() -> None:
    """A down collector beside a live one: every packet is still made, for the live one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        port = collector.getsockname()[1]
        sender = HepSender([
            HepDestination("udp", "127.0.0.1", _closed_udp_port()),
            HepDestination("udp", "127.0.0.1", port),
        ])  # one destination a line, the down one first  # fmt: skip
        for n in range(3):
            sender.offer(packet(n))
        sender.flush()
        assert sender.taking()
        await sender.stop()


async def test_a_tcp_collector_back_is_taken_at_once() -> None:
    """Refused, the TCP collector is down until its reconnection: packets are refused; once
    a connection is up, they are taken without waiting for the retry's timer."""
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        sender = HepSender([HepDestination("tcp", "127.0.0.1", port)])
        target = sender._targets[0]
        sender.offer(packet(0))
        sender.flush()  # no connection (being refused): down until the next attempt
        assert not sender.taking()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    await until(sender.taking)  # the gate's retry, then offers that reconnect
    while not target.connected():
        sender.offer(packet(1))
        sender.flush()
        await asyncio.sleep(0.05)
    assert sender.taking()
    sender.offer(packet(2))
    await until(lambda: received.endswith(packet(2)))
    await sender.stop()
    server.close()
    await server.wait_closed()


async def test_a_stalled_tcp_collector_is_skipped_until_it_reads_again() -> None:
    """A collector that takes the connection and stops reading: once our buffer passes its
    limit, packets are counted dropped (`slow`) before they are made, never queued; when
    the collector reads again, packets are taken at once and reach it."""
    reading = asyncio.Event()
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        while data := await reader.read(1 << 20):
            received.extend(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HepSender([HepDestination("tcp", "127.0.0.1", port)], tcp_buffer_limit=64 * 1024)
    await until(sender.connected)
    big = b"HEP3" + (4 + 16 * 1024).to_bytes(2, "big") + b"x" * 16 * 1024  # 16 KiB each
    for _ in range(2000):  # the kernel's buffers take some megabytes first: at most 32 MiB
        if not sender.taking():
            break
        sender.offer(big)
        sender.flush()
        await asyncio.sleep(0)
    assert not sender.taking(), "a collector that never reads was still being sent to"
    before = metrics.DROPPED.get("slow", 0)
    assert [sender.taking() for _ in range(10)] == [False] * 10
    assert metrics.DROPPED.get("slow", 0) - before == 10  # counted slow, not down
    reading.set()
    await until(sender.taking)  # drained below the limit: taken again at once
    sender.offer(packet(7))
    await until(lambda: received.endswith(packet(7)))
    await sender.stop()
    server.close()
