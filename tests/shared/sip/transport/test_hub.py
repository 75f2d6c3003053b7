"""All sockets behind one send(): several listeners, both address families, both loops."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from deploy.labs.ports import free_port
from shared.settings import ListenAddress
from shared.sip.transport.base import TransportError
from shared.sip.transport.destination import Destination
from shared.sip.transport.hub import Transports
from tests.shared.sip.transport.support import OK, OPTIONS, Inbox, ipv6_available


def addresses(*hosts: str) -> list[ListenAddress]:
    return [ListenAddress(kind, host, 0) for host in hosts for kind in ("udp", "tcp")]


async def exchange_over_every_listener(hosts: tuple[str, ...]) -> None:
    inbox = Inbox()
    transports = await Transports.open(addresses(*hosts), inbox)
    try:
        assert [(item.transport, item.host) for item in transports.listeners] == [
            *((("udp", host)) for host in hosts),
            *((("tcp", host)) for host in hosts),
        ]
        loop = asyncio.get_running_loop()
        for listener in transports.listeners:
            family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
            kind = socket.SOCK_DGRAM if listener.transport == "udp" else socket.SOCK_STREAM
            with socket.socket(family, kind) as peer:
                peer.settimeout(5)
                peer.connect((listener.host, listener.port))
                peer.send(OPTIONS)
                data, source, local = await inbox.get()
                assert (data, local) == (OPTIONS, listener)
                await transports.send(OK, source)
                assert await loop.run_in_executor(None, peer.recv, 1000) == OK
    finally:
        await transports.close()


async def test_every_listener_receives_and_answers() -> None:
    hosts = ("127.0.0.1", "::1") if ipv6_available() else ("127.0.0.1",)
    await exchange_over_every_listener(hosts)


def test_the_adapters_run_on_uvloop() -> None:
    hosts = ("127.0.0.1", "::1") if ipv6_available() else ("127.0.0.1",)
    uvloop.run(exchange_over_every_listener(hosts))


async def test_udp_needs_a_socket_of_the_destination_family() -> None:
    transports = await Transports.open([ListenAddress("udp", "127.0.0.1", 0)], Inbox())
    try:
        with pytest.raises(TransportError, match="address family"):
            await transports.send(OK, Destination("udp", "2001:db8::1", 5060))
        with pytest.raises(TransportError, match="no ws transport"):
            await transports.send(OK, Destination("ws", "127.0.0.1", 80))
    finally:
        await transports.close()


async def test_a_failing_listener_closes_the_ones_already_open() -> None:
    tcp_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        listen = [
            ListenAddress("tcp", "127.0.0.1", tcp_port),
            ListenAddress("udp", "127.0.0.1", taken.getsockname()[1]),
        ]
        with pytest.raises(OSError):
            await Transports.open(listen, Inbox())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.bind(("127.0.0.1", tcp_port))  # free again: the TCP listener was closed
        again.listen()
