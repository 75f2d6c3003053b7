"""All SIP sockets of a process behind one `send(data, destination)`.

Services open what `CALLMESH_SIP_LISTEN` lists and send without caring which
socket fits: UDP goes out of a socket of the destination's address family (so
the peer sees the address it knows us by), streams through the connection
table of their transport (TCP, or TLS: `tls`).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.settings import ListenAddress
from shared.sip.transport.base import Listener, MessageHandler, TransportError, TransportLimits
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpTransport
from shared.sip.transport.tls import TlsTransport
from shared.sip.transport.tls_context import ProfileLookup, TlsContexts, TlsFiles
from shared.sip.transport.udp import UdpEndpoint, open_udp


class Transports:
    """The listening sockets and outbound paths of one process."""

    def __init__(
        self,
        on_message: MessageHandler,
        limits: TransportLimits | None = None,
        tls: TlsFiles | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        """`tls`: our certificate and the CAs we trust (default: none, the system's CAs);
        `profiles`: the TLS options of the peers that have their own (gateways)."""
        self.limits = limits or TransportLimits()
        self._on_message = on_message
        self.tcp = TcpTransport(on_message, self.limits)
        self.tls = TlsTransport(on_message, TlsContexts(tls or TlsFiles()), self.limits, profiles)
        self._udp: list[UdpEndpoint] = []

    @classmethod
    async def open(
        cls,
        addresses: Iterable[ListenAddress],
        on_message: MessageHandler,
        limits: TransportLimits | None = None,
        tls: TlsFiles | None = None,
    ) -> Transports:
        """Listen on every address; on failure the ones already opened are closed again."""
        transports = cls(on_message, limits, tls)
        try:
            for address in addresses:
                await transports.listen(address)
        except BaseException:
            await transports.close()
            raise
        return transports

    @property
    def listeners(self) -> list[Listener]:
        return (
            [endpoint.listener for endpoint in self._udp] + self.tcp.listeners + self.tls.listeners
        )

    async def listen(self, address: ListenAddress) -> Listener:
        if address.transport == "udp":
            endpoint = await open_udp(address.host, address.port, self._on_datagram, self.limits)
            self._udp.append(endpoint)
            return endpoint.listener
        if address.transport == "tls":
            self.tls.contexts.server()  # no certificate: refused now, not at the first peer
            return await self.tls.listen(address.host, address.port)
        return await self.tcp.listen(address.host, address.port)

    def _on_datagram(
        self, data: bytes, source: Destination, listener: Listener, _received_at: float
    ) -> None:
        """These services time nothing by a message's arrival: the kernel's stamp is not kept."""
        self._on_message(data, source, listener)

    async def send(self, data: bytes, destination: Destination) -> Listener:
        """Send one message; raises `TransportError` when it cannot leave (§17.1.4 input).

        Returns our end it left by (the UDP socket's, or the connection's local address)."""
        if destination.transport == "udp":
            endpoint = self._udp_for(destination.host)
            endpoint.send(data, destination)
            return endpoint.listener
        if destination.transport == "tcp":
            return (await self.tcp.send(data, destination)).listener
        if destination.transport == "tls":
            return (await self.tls.send(data, destination)).listener
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
        await self.tls.close()
