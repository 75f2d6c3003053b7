"""TCP adapter on loopback: framing, keep-alives, reuse, idle close, limits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from shared.sip.transport.base import BindError, TransportError, TransportLimits
from shared.sip.transport.destination import Destination, response_destination
from shared.sip.transport.tcp import TcpTransport
from shared.sip.via import parse_via
from tests.shared.bus.support import until
from tests.shared.sip.transport.support import (
    FLOOD_BOUND,
    OK,
    OPTIONS,
    Inbox,
    flood_unread,
    ipv6_available,
    small_send_buffers,
    stalled,
)

HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6")),
]


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox) -> AsyncIterator[TcpTransport]:
    transport = TcpTransport(inbox, TransportLimits(max_connections=2, max_message_size=1000))
    yield transport
    await transport.close()


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), timeout=5)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout=5) == b""
    except ConnectionResetError:  # an aborted connection
        return True


@pytest.mark.parametrize("host", HOSTS)
async def test_messages_and_ping_in_one_segment(
    server: TcpTransport, inbox: Inbox, host: str
) -> None:
    listener = await server.listen(host, 0)
    reader, writer = await asyncio.open_connection(host, listener.port)
    writer.write(OPTIONS + b"\r\n\r\n" + OPTIONS[:30])
    data, source, local = await inbox.get()
    assert data == OPTIONS
    assert source.transport == "tcp" and source.host == host
    assert source.port == writer.get_extra_info("sockname")[1]
    assert source.connection_id is not None
    assert (local.host, local.port) == (host, listener.port)
    assert await read_exactly(reader, 2) == b"\r\n"  # the pong
    writer.write(OPTIONS[30:])
    assert (await inbox.get())[0] == OPTIONS
    writer.close()


async def test_response_goes_back_on_the_same_connection(
    server: TcpTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(OPTIONS)
    _, source, _ = await inbox.get()
    await server.send(OK, source)
    assert await read_exactly(reader, len(OK)) == OK
    # Addressed by the peer's address alone, the open connection is reused too.
    await server.send(OK, Destination("tcp", source.host, source.port))
    assert await read_exactly(reader, len(OK)) == OK
    assert len(server) == 1
    writer.close()


async def test_outbound_connection_is_reused_and_answers_come_back_on_it(
    server: TcpTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client_inbox = Inbox()
    client = TcpTransport(client_inbox)
    try:
        target = Destination("tcp", "127.0.0.1", listener.port)
        first = await client.send(OPTIONS, target)
        second = await client.send(OPTIONS, target)
        assert first is second
        _, source, _ = await inbox.get()
        await inbox.get()
        await server.send(OK, source)
        data, came_from, _ = await client_inbox.get()
        assert data == OK
        assert came_from.connection_id == first.id
        assert len(client) == 1 and len(server) == 1
    finally:
        await client.close()


async def test_concurrent_sends_share_one_new_connection(
    server: TcpTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client = TcpTransport(Inbox())
    try:
        target = Destination("tcp", "127.0.0.1", listener.port)
        connections = await asyncio.gather(*(client.send(OPTIONS, target) for _ in range(5)))
        assert len({connection.id for connection in connections}) == 1
        for _ in range(5):
            assert (await inbox.get())[0] == OPTIONS
    finally:
        await client.close()


async def test_connection_named_by_hostname_is_reused() -> None:
    receiver = TcpTransport(Inbox())
    client = TcpTransport(Inbox())
    try:
        listener = await receiver.listen("127.0.0.1", 0)
        first = await client.send(OPTIONS, Destination("tcp", "localhost", listener.port))
        second = await client.send(OPTIONS, Destination("tcp", "localhost", listener.port))
        assert first is second
    finally:
        await client.close()
        await receiver.close()


async def test_missing_content_length_closes_the_connection(
    server: TcpTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(OPTIONS + b"OPTIONS sip:x SIP/2.0\r\nCall-ID: y\r\n\r\n")
    assert (await inbox.get())[0] == OPTIONS
    assert await closed_by_peer(reader)
    writer.close()


async def test_oversized_message_closes_the_connection(server: TcpTransport) -> None:
    listener = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 1001\r\n\r\n")
    assert await closed_by_peer(reader)
    writer.close()


async def test_connections_over_the_limit_are_refused(server: TcpTransport, inbox: Inbox) -> None:
    listener = await server.listen("127.0.0.1", 0)
    kept = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(2)]
    for _, writer in kept:  # make sure both were accepted before the third arrives
        writer.write(OPTIONS)
        await inbox.get()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    assert await closed_by_peer(reader)
    assert len(server) == 2
    for _, kept_writer in kept:
        kept_writer.close()
    writer.close()


async def test_idle_connection_is_closed_and_forgotten(inbox: Inbox) -> None:
    server = TcpTransport(inbox, TransportLimits(idle_timeout=0.2))
    try:
        listener = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(OPTIONS)
        _, source, _ = await inbox.get()
        assert await closed_by_peer(reader)
        await asyncio.sleep(0)  # let connection_lost run
        assert len(server) == 0
        assert server.connection(source) is None
        writer.close()
    finally:
        await server.close()


async def test_connect_failure_is_a_transport_error() -> None:
    client = TcpTransport(Inbox())
    probe = TcpTransport(Inbox())
    listener = await probe.listen("127.0.0.1", 0)
    await probe.close()  # nothing listens on that port any more
    try:
        with pytest.raises(TransportError, match=r"tcp connect to 127\.0\.0\.1"):
            await client.send(OPTIONS, Destination("tcp", "127.0.0.1", listener.port))
        assert len(client) == 0
    finally:
        await client.close()


async def test_a_failing_handler_does_not_close_the_connection() -> None:
    inbox = Inbox()
    calls = []

    def flaky(data: bytes, source: Destination, listener: object) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        inbox(data, source, listener)  # type: ignore[arg-type]

    server = TcpTransport(flaky)
    try:
        listener = await server.listen("127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(OPTIONS + OPTIONS)
        assert (await inbox.get())[0] == OPTIONS
        assert len(calls) == 2 and len(server) == 1
        writer.close()
    finally:
        await server.close()


# ----- one address must not lock everyone out -----------------------------------------

ATTACKER, VICTIM = "127.0.0.3", "127.0.0.2"


async def connect_from(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def test_half_sent_connections_from_one_address_do_not_lock_out_another(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    limits = TransportLimits(max_connections=10, max_connections_per_source=4)
    server = TcpTransport(inbox, limits)
    try:
        listener = await server.listen("127.0.0.1", 0)
        attack = [await connect_from(ATTACKER, listener.port) for _ in range(10)]
        for _, writer in attack:
            writer.write(OPTIONS[:40])  # never finished
        refused = [reader for reader, _ in attack[4:]]
        for reader in refused:
            assert await closed_by_peer(reader)
        await until(lambda: len(server) == 4)
        reader, writer = await connect_from(VICTIM, listener.port)
        writer.write(OPTIONS)
        data, source, _ = await inbox.get()
        assert (data, source.host) == (OPTIONS, VICTIM)
        await server.send(OK, source)
        assert await read_exactly(reader, len(OK)) == OK
        warnings = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(warnings) == 1  # six refusals, one line
        assert "4 connections from 127.0.0.3 already" in warnings[0].getMessage()
        for _, attacker in attack:
            attacker.close()
        writer.close()
        await until(lambda: len(server) == 0)  # the per-source count is given back
        _, again = await connect_from(ATTACKER, listener.port)
        again.write(OPTIONS)
        assert (await inbox.get())[1].host == ATTACKER
        again.close()
    finally:
        await server.close()


async def test_a_trickling_message_is_cut_at_the_deadline_despite_its_traffic(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    server = TcpTransport(inbox, TransportLimits(message_timeout=0.5))
    try:
        listener = await server.listen("127.0.0.1", 0)
        good_reader, good = await connect_from(VICTIM, listener.port)
        good.write(OPTIONS)  # whole: no deadline runs between messages
        await inbox.get()
        slow_reader, slow = await connect_from(ATTACKER, listener.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        for byte in OPTIONS[:30]:  # a byte every 0.1 s, for 3 s or more
            slow.write(bytes([byte]))
            sent += 1
            await asyncio.sleep(0.1)
            if slow_reader.at_eof() or slow_reader.exception() is not None:
                break  # closed, or reset (the cut found unread bytes of ours)
        assert await closed_by_peer(slow_reader)
        assert loop.time() - started >= 0.5
        # Cut while still trickling: a deadline that each byte pushed back would let all 30 in.
        # (Counted in bytes, not seconds: a busy machine stretches the sleeps, not the count.)
        assert sent < 30
        assert "no whole message within 0.5 s" in caplog.text
        good.write(OPTIONS)  # the control: the connection that sent whole messages lives
        assert (await inbox.get())[1].host == VICTIM
        silent_reader, _ = await connect_from(ATTACKER, listener.port)
        assert await closed_by_peer(silent_reader)  # nothing at all: the first-message deadline
        pinging_reader, pinging = await connect_from(ATTACKER, listener.port)
        pinging.write(b"\r\n\r\n")  # keep-alives are answered but are no first message
        assert await read_exactly(pinging_reader, 2) == b"\r\n"
        assert await closed_by_peer(pinging_reader)
        assert not good_reader.at_eof()
    finally:
        await server.close()


async def test_admission_refuses_a_source_at_accept(inbox: Inbox) -> None:
    server = TcpTransport(inbox)
    server.admit = lambda source: source.host != ATTACKER
    try:
        listener = await server.listen("127.0.0.1", 0)
        refused, _ = await connect_from(ATTACKER, listener.port)
        assert await closed_by_peer(refused)
        _, writer = await connect_from(VICTIM, listener.port)
        writer.write(OPTIONS)
        assert (await inbox.get())[1].host == VICTIM
        writer.close()
    finally:
        await server.close()


async def test_a_port_in_use_is_named_in_the_error(server: TcpTransport) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BindError) as caught:
            await server.listen("127.0.0.1", port)
    assert str(caught.value) == f"tcp:127.0.0.1:{port}: address already in use"


async def test_a_connection_id_of_another_peer_is_not_followed(
    server: TcpTransport, inbox: Inbox
) -> None:
    """A flow names its address and its connection's id; ids restart with the process (and
    each worker counts its own), so an id now held by another peer's connection must not
    carry a message meant for the address the flow names."""
    listener = await server.listen("127.0.0.1", 0)
    reader_a, writer_a = await asyncio.open_connection("127.0.0.1", listener.port)
    reader_b, writer_b = await asyncio.open_connection("127.0.0.1", listener.port)
    writer_a.write(OPTIONS)
    _, a, _ = await inbox.get()
    writer_b.write(OPTIONS)
    _, b, _ = await inbox.get()
    await server.send(OK, Destination("tcp", a.host, a.port, b.connection_id))
    assert await read_exactly(reader_a, len(OK)) == OK
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader_b.read(1), 0.3)
    writer_a.close()
    writer_b.close()


async def test_a_response_without_rport_goes_back_on_the_connection_then_to_sent_by(
    server: TcpTransport, inbox: Inbox
) -> None:
    """RFC 3261 §18.2.2: on the request's connection while it is open, whatever the Via's
    port (most TCP phones send no rport, and behind NAT their sent-by port is not reachable);
    once it has closed, a new connection to the received address and the sent-by port."""
    sent_by = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    sent_by_port = sent_by.sockets[0].getsockname()[1]
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    sent_by.close()
    await sent_by.wait_closed()
    phone = await asyncio.start_server(
        lambda r, w: accepted.put_nowait(r), "127.0.0.1", sent_by_port
    )
    listener = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    via = f"SIP/2.0/TCP 127.0.0.1:{sent_by_port};branch=z9hG4bKnorport"
    writer.write(
        OPTIONS.replace(b"SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKtest1;rport", via.encode())
    )
    _, source, _ = await inbox.get()
    answer_to = response_destination(parse_via(via), source.address, source.connection_id)
    await server.send(OK, answer_to)
    assert await read_exactly(reader, len(OK)) == OK
    assert accepted.empty() and len(server) == 1
    writer.close()
    await until(lambda: len(server) == 0)
    await server.send(OK, answer_to)
    again = await asyncio.wait_for(accepted.get(), timeout=5)
    assert await read_exactly(again, len(OK)) == OK
    phone.close()


async def test_crlf_pings_whose_pongs_are_never_read_are_cut_at_the_unread_limit(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A pong per CRLF ping: a peer that never reads them had the process buffer them all."""
    transport = TcpTransport(inbox, TransportLimits(max_unsent=64 * 1024))
    listener = await transport.listen("127.0.0.1", 0)
    before = stalled("tcp")
    try:
        small_send_buffers(transport)
        sent = await flood_unread(listener.port, OPTIONS, b"\r\n\r\n")
        assert sent < FLOOD_BOUND  # cut (what the kernel's buffers hold is sent before)
        await until(lambda: len(transport) == 0)
        assert stalled("tcp") == before + 1
        assert (await inbox.get())[0] == OPTIONS
        lines = [r for r in caplog.records if "sent and not read" in r.getMessage()]
        assert len(lines) == 1 and not lines[0].exc_info
    finally:
        await transport.close()


async def test_a_message_to_a_peer_over_its_unread_limit_is_a_transport_error(
    inbox: Inbox,
) -> None:
    transport = TcpTransport(inbox, TransportLimits(max_unsent=len(OK) - 1))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(OPTIONS)
        _, source, _ = await inbox.get()
        await transport.send(OK[:10], source)  # within the limit (the buffer is empty)
        with pytest.raises(TransportError):
            await transport.send(OK, source)  # would leave more than the limit unread
        await until(lambda: len(transport) == 0)  # cut
        writer.close()
    finally:
        await transport.close()


async def test_a_pong_is_told_to_on_pong_with_its_connection(
    server: TcpTransport, inbox: Inbox
) -> None:
    """A lone CRLF between messages (RFC 5626's pong) goes to `on_pong`, naming the connection
    it came on; a ping is answered and not told, and a message is not a pong."""
    pongs: list[Destination] = []
    server.on_pong = pongs.append
    listener = await server.listen("127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    _, other = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(OPTIONS + b"\r\n\r\n")
    _, source, _ = await inbox.get()
    writer.write(b"\r\n")
    await until(lambda: len(pongs) == 1)
    assert pongs == [source] and source.connection_id is not None
    other.write(b"\r")  # a pong split across segments is still one pong
    await asyncio.sleep(0.05)
    other.write(b"\n")
    await until(lambda: len(pongs) == 2)
    assert pongs[1].connection_id not in (None, source.connection_id)
    assert pongs[1].port == other.get_extra_info("sockname")[1]
    writer.close()
    other.close()
