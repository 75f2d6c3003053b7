"""SIP over WebSocket on loopback with a wsproto client: the upgrade, framing, limits, pings."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from deploy.labs.certificates import CertAuthority
from shared.sip.transport.base import TransportError, TransportLimits
from shared.sip.transport.destination import Destination
from shared.sip.transport.tls_context import TlsContexts, TlsFiles
from shared.sip.transport.ws import WssTransport, WsTransport
from shared.sip.transport.ws_policy import WebSocketPolicy, allowed_origins
from tests.shared.bus.support import until
from tests.shared.sip.transport.support import (
    FLOOD_BOUND,
    OK,
    OPTIONS,
    Inbox,
    flood_unread,
    small_send_buffers,
    stalled,
)
from tests.shared.sip.transport.ws_client import RefusedError, WsClient, raw_upgrade


def counted(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(f"callmesh_sip_ws_{name}_total", {"reason": reason}) or 0.0


PING_125 = b"\x89\xfd" + b"\x00" * 4 + b"x" * 125
"""A client's ping with the largest payload a control frame holds (masked with a zero key)."""


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox) -> AsyncIterator[WsTransport]:
    policy = WebSocketPolicy(allowed_origins(["https://app.example.com/"]), ping_interval=60)
    transport = WsTransport(inbox, TransportLimits(max_message_size=1000), policy)
    yield transport
    await transport.close()


async def test_a_message_is_one_websocket_message_and_answered_on_its_connection(
    server: WsTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    assert listener.transport == "ws"
    client = await WsClient.connect(listener.port)
    client.send(OPTIONS)  # no CRLF after it, no stream framing: the message is the frame
    data, source, local = await inbox.get()
    assert data == OPTIONS
    assert (source.transport, local.transport) == ("ws", "ws")
    assert source.connection_id is not None
    await server.send(OK, source)
    assert await client.receive() == OK  # as a text message: what browsers' stacks read
    await client.close()


async def test_a_binary_message_and_a_fragmented_one_each_arrive_whole(
    server: WsTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client = await WsClient.connect(listener.port)
    client.send(OPTIONS, binary=True)
    client.send(OPTIONS.replace(b"test1", b"test2"), pieces=4)
    assert (await inbox.get())[0] == OPTIONS
    assert (await inbox.get())[0] == OPTIONS.replace(b"test1", b"test2")
    assert inbox.queue.empty()
    await client.close()


async def test_an_upgrade_without_the_sip_subprotocol_is_a_400_counted(
    server: WsTransport, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    await WsClient.connect(listener.port)  # the positive control
    before = counted("refused", "subprotocol")
    with pytest.raises(RefusedError) as refused:
        await WsClient.connect(listener.port, subprotocols=("chat",))
    assert refused.value.status == 400
    assert b"sip WebSocket subprotocol is required (offered: chat)" in refused.value.body
    assert counted("refused", "subprotocol") == before + 1
    lines = [r for r in caplog.records if "upgrade refused" in r.getMessage()]
    assert len(lines) == 1 and not any(r.exc_info for r in caplog.records)


async def test_an_origin_not_allowed_is_a_403_and_no_origin_is_let_in(
    server: WsTransport,
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    await WsClient.connect(listener.port, origin="HTTPS://App.Example.com")
    await WsClient.connect(listener.port, origin=None)  # no browser: nothing to protect
    before = counted("refused", "origin")
    with pytest.raises(RefusedError) as refused:
        await WsClient.connect(listener.port, origin="https://evil.example")
    assert refused.value.status == 403
    assert b"origin https://evil.example is not allowed" in refused.value.body
    assert counted("refused", "origin") == before + 1


async def test_any_origin_is_let_in_without_an_allow_list(inbox: Inbox) -> None:
    transport = WsTransport(inbox, websocket=WebSocketPolicy())
    listener = await transport.listen("127.0.0.1", 0)
    try:
        client = await WsClient.connect(listener.port, origin="https://anyone.example")
        client.send(OPTIONS)
        assert (await inbox.get())[0] == OPTIONS
    finally:
        await transport.close()


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: edge\r\n\r\n", 400),  # plain HTTP
        (OPTIONS, 400),  # SIP on a WebSocket port
        (
            b"GET / HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            426,
        ),
    ],
)
async def test_a_request_that_is_no_websocket_upgrade_is_a_4xx_never_a_traceback(
    server: WsTransport,
    inbox: Inbox,
    request_: bytes,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    before = counted("refused", "not_websocket")
    answer = await raw_upgrade(listener.port, request_)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Length: " in answer and answer.endswith(b"\n")
    assert counted("refused", "not_websocket") == before + 1
    assert inbox.queue.empty()
    assert not any(record.exc_info for record in caplog.records)


async def test_an_oversized_message_closes_the_connection_with_1009(
    server: WsTransport, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client = await WsClient.connect(listener.port)
    client.send(OPTIONS)
    assert (await inbox.get())[0] == OPTIONS
    before = counted("closed", "too_big")
    body = b"Content-Length: 1200\r\n\r\n" + b"x" * 1200
    big = OPTIONS.replace(b"Content-Length: 0\r\n\r\n", body)
    client.send(big, pieces=3)  # too big counts the pieces, not a frame's size
    with pytest.raises(ConnectionError, match="1009"):
        await client.receive()
    assert counted("closed", "too_big") == before + 1
    assert any(
        "a message over 1000 bytes; closing (1009)" in r.getMessage() for r in caplog.records
    )
    assert inbox.queue.empty()
    await until(lambda: len(server) == 0)


async def test_broken_frames_close_the_connection_with_1002(
    server: WsTransport, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client = await WsClient.connect(listener.port)
    before = counted("closed", "protocol")
    client.writer.write(b"\x81\x02hi")  # a client's frame must be masked (RFC 6455 §5.1)
    with pytest.raises(ConnectionError, match="1002"):
        await client.receive()
    assert counted("closed", "protocol") == before + 1
    assert inbox.queue.empty()
    assert not any(record.exc_info for record in caplog.records)


async def test_a_peer_that_goes_on_after_its_close_is_cut_without_a_traceback(
    server: WsTransport, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    client = await WsClient.connect(listener.port)
    client.writer.write(client.ws.send(CloseConnection(code=1000)))
    masked = b"\x81\xfe" + len(OPTIONS).to_bytes(2, "big") + b"\x00" * 4 + OPTIONS
    client.writer.write(masked)  # a message after its own close (a zero mask): not read
    with pytest.raises(ConnectionError):
        await client.receive()
    await until(lambda: len(server) == 0)
    assert inbox.queue.empty()
    assert not any(record.exc_info for record in caplog.records)


async def test_a_ping_is_answered_and_a_silent_peer_is_pinged(inbox: Inbox) -> None:
    transport = WsTransport(inbox, websocket=WebSocketPolicy(ping_interval=0.2))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        client = await WsClient.connect(listener.port)
        client.ping(b"are you there")
        while not client.pongs:
            await client.pump()
        assert client.pongs[0].payload == b"are you there"
        while not client.pings:  # silent past the interval: the server asks
            await client.pump()
        assert len(transport) == 1
    finally:
        await transport.close()


async def test_a_peer_that_answers_no_ping_is_closed_when_idle(inbox: Inbox) -> None:
    limits = TransportLimits(idle_timeout=0.6)
    transport = WsTransport(inbox, limits, WebSocketPolicy(ping_interval=0.1))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        answering = await WsClient.connect(listener.port)
        mute = await WsClient.connect(listener.port)
        mute.answer_pings = False
        await until(lambda: len(transport) == 2)

        async def answer_pings() -> None:
            while True:
                await answering.pump()  # answers each ping, so it stays

        answering_task = asyncio.create_task(answer_pings())
        while mute.closed is None:
            await mute.pump()
        assert mute.closed.code == 1001
        assert len(transport) == 1 and answering.closed is None
        answering_task.cancel()
    finally:
        await transport.close()


async def test_the_upgrade_is_due_within_the_message_time(inbox: Inbox) -> None:
    transport = WsTransport(inbox, TransportLimits(message_timeout=0.2))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        client = await WsClient.connect(listener.port)  # upgraded: its slot is earned
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET / HTTP/1.1\r\n")  # and nothing more
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        assert len(transport) == 1
        await client.close()
        writer.close()
    finally:
        await transport.close()


async def test_a_source_over_its_connection_cap_is_refused_before_any_upgrade(
    inbox: Inbox,
) -> None:
    transport = WsTransport(inbox, TransportLimits(max_connections_per_source=1))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        first = await WsClient.connect(listener.port)
        with pytest.raises(ConnectionError):  # closed at accept: no HTTP answer at all
            await WsClient.connect(listener.port)
        first.send(OPTIONS)  # the first one is unharmed
        assert (await inbox.get())[0] == OPTIONS
        assert len(transport) == 1
    finally:
        await transport.close()


async def test_a_websocket_peer_is_never_dialled(server: WsTransport) -> None:
    with pytest.raises(TransportError, match="over the connection it opened only"):
        await server.send(OK, Destination("ws", "127.0.0.1", 9, 12345))


async def test_wss_is_the_websocket_inside_tls_with_tls_certificates(
    tmp_path: Path, inbox: Inbox
) -> None:
    ca = CertAuthority(tmp_path / "ca")
    edge = ca.issue("edge")
    files = TlsFiles(str(edge.cert), str(edge.key), str(ca.cert), handshake_timeout=2)
    transport = WssTransport(inbox, TlsContexts(files), websocket=WebSocketPolicy())
    listener = await transport.listen("127.0.0.1", 0)
    try:
        assert listener.transport == "wss"
        context = ssl.create_default_context(cafile=str(ca.cert))
        client = await WsClient.connect(listener.port, context=context)
        client.send(OPTIONS, pieces=2)
        data, source, _ = await inbox.get()
        assert (data, source.transport) == (OPTIONS, "wss")
        await transport.send(OK, source)
        assert await client.receive() == OK
        with pytest.raises(RefusedError) as refused:
            await WsClient.connect(listener.port, subprotocols=(), context=context)
        assert refused.value.status == 400
        await client.close()
    finally:
        await transport.close()


async def test_a_ping_flood_that_reads_no_pong_is_cut_at_the_unread_limit(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Each ping asks for a pong; a peer that never reads them made the edge buffer them all
    (its memory grew by what the peer sent: 22 MB after 26 MB of pings) until it is cut."""
    transport = WsTransport(inbox, TransportLimits(max_unsent=64 * 1024))
    listener = await transport.listen("127.0.0.1", 0)
    client = WSConnection(ConnectionType.CLIENT)
    upgrade = client.send(Request(host="127.0.0.1", target="/", subprotocols=["sip"]))

    async def upgraded(reader: asyncio.StreamReader) -> None:
        client.receive_data(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
        assert any(isinstance(event, AcceptConnection) for event in client.events())

    before = stalled("ws")
    try:
        small_send_buffers(transport)
        sent = await flood_unread(listener.port, upgrade, PING_125, greeted=upgraded)
        assert sent < FLOOD_BOUND  # cut (what the kernel's buffers hold is sent before)
        await until(lambda: len(transport) == 0)
        assert stalled("ws") == before + 1
        lines = [r for r in caplog.records if "sent and not read" in r.getMessage()]
        assert len(lines) == 1 and not lines[0].exc_info
    finally:
        await transport.close()
