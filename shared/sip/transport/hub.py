"""All SIP sockets of a process behind one `send(data, destination)`.

Services open what `CALLMESH_SIP_LISTEN` lists and send without caring which
socket fits: UDP goes out of a socket of the destination's address family (so
the peer sees the address it knows us by), streams through the connection
table.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.settings import ListenAddress
from shared.sip.transport.base import Listener, MessageHandler, TransportError, TransportLimits
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpTransport
from shared.sip.transport.udp import UdpEndpoint, open_udp


class Transports:
    """The listening sockets and outbound paths of one process."""

    def __init__(self, on_message: MessageHandler, limits: TransportLimits | None = None) -> None:
        self.limits = limits or TransportLimits()
        self._on_message = on_message
        self.tcp = TcpTransport(on_message, self.limits)
        self._udp: list[UdpEndpoint] = []

    @classmethod
    async def open(
        cls,
        addresses: Iterable[ListenAddress],
        on_message: MessageHandler,
        limits: TransportLimits | None = None,
    ) -> Transports:
        """Listen on every address; on failure the ones already opened are closed again."""
        transports = cls(on_message, limits)
        try:
            for address in addresses:
                await transports.listen(address)
        except BaseException:
            await transports.close()
            raise
        return transports

    @property
    def listeners(self) -> list[Listener]:
        return [endpoint.listener for endpoint in self._udp] + self.tcp.listeners

    async def listen(self, address: ListenAddress) -> Listener:
        if address.transport == "udp":
            endpoint = await open_udp(address.host, address.port, self._on_message, self.limits)
            self._udp.append(endpoint)
            return endpoint.listener
        return await self.tcp.listen(address.host, address.port)

    async def send(self, data: bytes, destination: Destination) -> None:
        """Send one message; raises `TransportError` when it cannot leave (§17.1.4 input)."""
        if destination.transport == "udp":
            self._udp_for(destination.host).send(data, destination)
        elif destination.transport == "tcp":
            await self.tcp.send(data, destination)
        else:
            raise TransportError(f"no {destination.transport} transport")

    def _udp_for(self, host: str) -> UdpEndpoint:
        ipv6 = ":" in host
        for endpoint in self._udp:
            if (":" in endpoint.listener.host) == ipv6:
                return endpoint
        raise TransportError(f"no UDP socket of the address family of {host}")

    async def close(self) -> None:
        for endpoint in self._udp:
            endpoint.close()
        self._udp.clear()
        await self.tcp.close()
