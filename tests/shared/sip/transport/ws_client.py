"""A WebSocket client for the tests (wsproto over asyncio streams): a browser's SIP, or DevTools.

It does what JsSIP does on the wire (an upgrade offering `sip`, an Origin, one
SIP message per WebSocket message) and what a test needs beyond that: a refused
upgrade's HTTP answer, fragmented messages, pings, the close the server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class RefusedError(Exception):
    """The server answered the upgrade with an HTTP error."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status} {body!r}")
        self.status = status
        self.body = body


@dataclass
class WsClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ws: WSConnection
    messages: list[TextMessage | BytesMessage] = field(default_factory=list)
    pings: list[Ping] = field(default_factory=list)
    pongs: list[Pong] = field(default_factory=list)
    closed: CloseConnection | None = None
    answer_pings: bool = True
    read_timeout: float = 5.0
    """Seconds a read waits for the server (a deadline against a hang, not a measure)."""
    _parts: list[TextMessage | BytesMessage] = field(default_factory=list)

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        host: str = "127.0.0.1",
        path: str = "/",
        subprotocols: tuple[str, ...] = ("sip",),
        origin: str | None = "https://app.example.com",
        context: ssl.SSLContext | None = None,
    ) -> WsClient:
        """Connect and upgrade; raises `RefusedError` with the HTTP status when refused."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"origin", origin.encode())] if origin is not None else []
        request = Request(
            host=f"{host}:{port}",
            target=path,
            subprotocols=list(subprotocols),
            extra_headers=headers,
        )
        writer.write(ws.send(request))
        client = cls(reader, writer, ws)
        rejected: RejectConnection | None = None
        body = b""
        while True:
            for event in await client._read_events():
                if isinstance(event, AcceptConnection):
                    assert event.subprotocol == (subprotocols[0] if subprotocols else None)
                    return client
                if isinstance(event, RejectConnection):
                    rejected = event
                    if not event.has_body:
                        raise RefusedError(event.status_code, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished and rejected is not None:
                        raise RefusedError(rejected.status_code, body)

    async def _read_events(self) -> list[Event]:
        data = await asyncio.wait_for(self.reader.read(65536), timeout=self.read_timeout)
        if not data:
            raise ConnectionError("closed by the server")
        self.ws.receive_data(data)
        return list(self.ws.events())

    def send(self, message: bytes, *, binary: bool = False, pieces: int = 1) -> None:
        """One SIP message as one WebSocket message, in `pieces` frames."""
        step = -(-len(message) // pieces)
        chunks = [message[i : i + step] for i in range(0, len(message), step)]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            event = (
                BytesMessage(data=chunk, message_finished=last)
                if binary
                else TextMessage(data=chunk.decode(), message_finished=last)
            )
            self.writer.write(self.ws.send(event))

    def ping(self, payload: bytes = b"hello") -> None:
        self.writer.write(self.ws.send(Ping(payload=payload)))

    async def receive(self) -> bytes:
        """The next whole SIP message (raises when the server closes first)."""
        while True:
            if self.messages:
                first = self.messages.pop(0)
                return first.data.encode() if isinstance(first.data, str) else bytes(first.data)
            if self.closed is not None:
                raise ConnectionError(f"closed: {self.closed.code} {self.closed.reason}")
            await self.pump()

    async def pump(self) -> None:
        """Read what the server sent; whole messages are kept, pings answered."""
        for event in await self._read_events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._parts.append(event)
                if event.message_finished:
                    self.messages.append(_joined(self._parts))
                    self._parts.clear()
            elif isinstance(event, Ping):
                self.pings.append(event)
                if self.answer_pings:
                    self.writer.write(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pongs.append(event)
            elif isinstance(event, CloseConnection):
                self.closed = event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def _joined(parts: list[TextMessage | BytesMessage]) -> TextMessage | BytesMessage:
    if isinstance(parts[0], TextMessage):
        return TextMessage(data="".join(str(part.data) for part in parts))
    return BytesMessage(data=b"".join(part.data for part in parts if isinstance(part.data, bytes)))


async def raw_upgrade(port: int, request: bytes) -> bytes:
    """Send `request` as is and read the whole answer (the server closes after a refusal)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
