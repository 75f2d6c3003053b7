"""What the transport tests share: a message collector and sample messages."""

from __future__ import annotations

import asyncio
import socket

from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination

OPTIONS = (
    b"OPTIONS sip:edge.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKtest1;rport\r\n"
    b"Call-ID: transport-test\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody"


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class Inbox:
    """A message handler that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Destination, Listener]] = asyncio.Queue()

    def __call__(self, data: bytes, source: Destination, listener: Listener) -> None:
        self.queue.put_nowait((data, source, listener))

    async def get(self) -> tuple[bytes, Destination, Listener]:
        return await asyncio.wait_for(self.queue.get(), timeout=5)
