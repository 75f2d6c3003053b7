"""TLS adapter on loopback with Python `ssl` peers: handshake, versions, cuts, reload, checks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from prometheus_client import REGISTRY

from deploy.labs.certificates import CertAuthority, Issued
from shared.settings import ListenAddress, Settings
from shared.sip.transport import tls_context
from shared.sip.transport.base import TransportError, TransportLimits, tls_limits_of
from shared.sip.transport.destination import Destination
from shared.sip.transport.hub import Transports
from shared.sip.transport.tls import TlsTransport
from shared.sip.transport.tls_context import ClientProfile, TlsConfigError, TlsContexts, TlsFiles
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


def failures(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("callmesh_sip_tls_handshake_failures_total", {"reason": reason})
        or 0.0
    )


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return CertAuthority(tmp_path / "ca")


@pytest.fixture
def edge_cert(ca: CertAuthority) -> Issued:
    return ca.issue("edge")


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox, ca: CertAuthority, edge_cert: Issued) -> AsyncIterator[TlsTransport]:
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), str(ca.cert), handshake_timeout=0.5)
    transport = TlsTransport(inbox, TlsContexts(files), TransportLimits(max_message_size=1000))
    yield transport
    await transport.close()


def client_context(ca: CertAuthority, issued: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout=5) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


async def test_a_message_over_tls_is_answered_on_its_connection(
    server: TlsTransport, inbox: Inbox, ca: CertAuthority
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    assert listener.transport == "tls"
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=client_context(ca), server_hostname="127.0.0.1"
    )
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    writer.write(OPTIONS + b"\r\n\r\n")
    data, source, local = await inbox.get()
    assert data == OPTIONS
    assert source.transport == "tls" and source.connection_id is not None
    assert local == listener
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"  # the pong, encrypted
    await server.send(OK, source)
    assert await asyncio.wait_for(reader.readexactly(len(OK)), 5) == OK
    pongs: list[Destination] = []
    server.on_pong = pongs.append
    writer.write(b"\r\n")  # the phone's pong to a CRLF ping of ours: told, decrypted
    await until(lambda: pongs == [source])
    writer.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_tls_1_0_and_1_1_are_refused(
    server: TlsTransport, ca: CertAuthority, version: ssl.TLSVersion
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    # Positive control: the same client, allowed 1.2, gets through.
    context = client_context(ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so the client offers the old versions at all
    context.minimum_version = version
    _, writer = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
    )
    writer.close()
    before = failures("protocol_version")
    context.maximum_version = version
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
        )
    await until(lambda: failures("protocol_version") == before + 1)
    await until(lambda: len(server) == 0)


async def test_plain_sip_on_the_tls_port_is_cut_and_counted(
    server: TlsTransport, inbox: Inbox
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    before = failures("protocol")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(OPTIONS)
    assert await closed_by_peer(reader)
    await until(lambda: failures("protocol") == before + 1)
    assert inbox.queue.empty()
    assert len(server) == 0


async def test_a_slow_handshake_is_cut_at_the_handshake_timeout_and_counted(
    server: TlsTransport, ca: CertAuthority
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    before = failures("timeout")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    # The first bytes of a ClientHello record, then nothing: the server waits for the rest.
    writer.write(b"\x16\x03\x01\x02\x00\x01")
    await until(lambda: len(server) == 1)
    assert await closed_by_peer(reader)  # within 0.5 s, the fixture's handshake timeout
    assert failures("timeout") == before + 1
    assert len(server) == 0


async def test_a_source_over_its_cap_is_refused_before_any_handshake(
    inbox: Inbox, ca: CertAuthority, edge_cert: Issued
) -> None:
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), handshake_timeout=2.0)
    limits = TransportLimits(max_connections_per_source=1)
    server = TlsTransport(inbox, TlsContexts(files), limits)
    try:
        listener = await server.listen("127.0.0.1", 0)
        context = client_context(ca)
        _, first = await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
        )
        before = failures("closed")
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"\x16\x03\x01")  # a ClientHello begun: never read, no handshake cost
        assert await closed_by_peer(reader)
        assert failures("closed") == before  # refused at accept, not a failed handshake
        assert len(server) == 1
        first.close()
    finally:
        await server.close()


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("callmesh_sip_tcp_refused_total", {"reason": reason}) or 0.0


async def test_the_process_tls_limit_and_idle_time_hold(
    inbox: Inbox, ca: CertAuthority, edge_cert: Issued
) -> None:
    """`CALLMESH_TLS_MAX_CONNECTIONS` and `CALLMESH_TLS_IDLE_TIMEOUT`, as `tls_limits_of` gives
    them: a connection past the limit is refused at accept; an idle one is closed."""
    limits = tls_limits_of(Settings(tls_max_connections=1, tls_idle_timeout=0.3))
    assert (limits.max_connections, limits.idle_timeout) == (1, 0.3)
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), handshake_timeout=2.0)
    server = TlsTransport(inbox, TlsContexts(files), limits)
    try:
        listener = await server.listen("127.0.0.1", 0)
        context = client_context(ca)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
        )
        writer.write(OPTIONS)
        await inbox.get()
        before = refused("limit")
        second, _ = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await closed_by_peer(second)
        assert refused("limit") == before + 1
        assert await closed_by_peer(reader)  # idle for 0.3 s: closed
        await until(lambda: len(server) == 0)
        writer.close()
    finally:
        await server.close()


def presented_serial(writer: asyncio.StreamWriter) -> int:
    from cryptography import x509

    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


async def test_a_renewed_certificate_is_used_by_new_handshakes(
    server: TlsTransport, ca: CertAuthority, edge_cert: Issued, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    context = client_context(ca)
    _, first = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
    )
    assert presented_serial(first) == ca.serial_of(edge_cert)
    renewed = ca.issue("renewed")
    edge_cert.cert.write_bytes(renewed.cert.read_bytes())
    edge_cert.key.write_bytes(renewed.key.read_bytes())
    # Without waiting for the next look at the files, as SIGHUP does:
    server.contexts.reload()
    _, second = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=context, server_hostname="127.0.0.1"
    )
    assert presented_serial(second) == ca.serial_of(renewed)
    first.close()
    second.close()


async def test_a_changed_certificate_file_is_picked_up_without_a_signal(
    ca: CertAuthority, edge_cert: Issued
) -> None:
    now = [0.0]
    contexts = TlsContexts(TlsFiles(str(edge_cert.cert), str(edge_cert.key)), lambda: now[0])
    first = contexts.server()
    assert contexts.server() is first
    renewed = ca.issue("renewed")
    edge_cert.cert.write_bytes(renewed.cert.read_bytes())
    edge_cert.key.write_bytes(renewed.key.read_bytes())
    now[0] = 0.5
    assert contexts.server() is first  # looked at once a second at most
    now[0] = 1.5
    assert contexts.server() is not first
    # A key that does not match (a renewal caught half written) keeps the last good one.
    current = contexts.server()
    edge_cert.key.write_bytes(ca.issue("other").key.read_bytes())
    now[0] = 3.0
    assert contexts.server() is current


def test_a_gateways_changed_client_certificate_is_loaded_for_the_next_connection(
    ca: CertAuthority, edge_cert: Issued
) -> None:
    """The client certificates of gateways (mutual TLS) are renewed as the server's is."""
    ours = ca.issue("client", client=True)
    contexts = TlsContexts(TlsFiles(ca=str(ca.cert)))
    profile = ClientProfile(certificate=str(ours.cert), private_key=str(ours.key))
    first = contexts.client(profile)
    assert contexts.client(profile) is first
    renewed = ca.issue("client-renewed", client=True)
    ours.cert.write_bytes(renewed.cert.read_bytes() + b"\n")  # another size: a new stamp
    ours.key.write_bytes(renewed.key.read_bytes())
    assert contexts.client(profile) is not first


# ---- outbound ------------------------------------------------------------------------


class Peer:
    """A TLS server on loopback that answers each message with OK (a gateway)."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.client_certs: list[dict[str, object] | None] = []
        self.server: asyncio.Server | None = None

    async def start(self, context: ssl.SSLContext) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.client_certs.append(writer.get_extra_info("peercert"))
        while True:
            try:
                data = await reader.readexactly(len(OPTIONS))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.received.put_nowait(data)
            writer.write(OK)
            await writer.drain()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def server_context(issued: Issued, client_ca: CertAuthority | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(issued.cert), str(issued.key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca.cert))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer()
    yield peer
    await peer.close()


def client(
    inbox: Inbox, ca: CertAuthority, profiles: dict[tuple[str, int], ClientProfile] | None = None
) -> TlsTransport:
    files = TlsFiles(ca=str(ca.cert), handshake_timeout=2.0)
    return TlsTransport(inbox, TlsContexts(files), profiles=(profiles or {}).get)


async def test_a_gateway_with_a_trusted_certificate_is_reached_and_reused(
    peer: Peer, ca: CertAuthority, inbox: Inbox
) -> None:
    port = await peer.start(server_context(ca.issue("gateway")))
    transport = client(inbox, ca)
    try:
        for _ in range(2):
            await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
            assert await asyncio.wait_for(peer.received.get(), 5) == OPTIONS
            data, source, _ = await inbox.get()
            assert data == OK and source.transport == "tls"
        assert len(peer.client_certs) == 1  # one connection, verified once
    finally:
        await transport.close()


BadCertificate = tuple[str, tuple[str, ...], tuple[int, int], str]


@pytest.mark.parametrize(
    "case",
    [
        ("untrusted", ("127.0.0.1",), (-1, 365), "self-signed certificate in certificate chain"),
        ("trusted", ("127.0.0.1",), (-30, -1), "certificate has expired"),
        ("trusted", ("gw.example.net",), (-1, 365), "IP address mismatch"),
    ],
    ids=["untrusted", "expired", "other-name"],
)
async def test_a_gateway_certificate_that_does_not_verify_is_a_transport_error(
    peer: Peer, ca: CertAuthority, inbox: Inbox, tmp_path: Path, case: BadCertificate
) -> None:
    issuer, hosts, days, why = case
    signer = ca if issuer == "trusted" else CertAuthority(tmp_path / "rogue", "Rogue CA")
    port = await peer.start(server_context(signer.issue("gateway", hosts=hosts, days=days)))
    transport = client(inbox, ca)
    before = failures("certificate")
    try:
        with pytest.raises(TransportError, match=why):
            await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        assert failures("certificate") == before + 1
        assert len(transport) == 0
        # Positive control: told not to verify, the same gateway is reached.
        lax = client(inbox, ca, {("127.0.0.1", port): ClientProfile(verify=False)})
        await lax.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        assert await asyncio.wait_for(peer.received.get(), 5) == OPTIONS
        await lax.close()
    finally:
        await transport.close()


async def test_a_server_name_override_is_sent_and_checked(
    peer: Peer, ca: CertAuthority, inbox: Inbox
) -> None:
    port = await peer.start(server_context(ca.issue("gateway", hosts=("gw.example.net",))))
    profile = ClientProfile(server_name="gw.example.net")
    transport = client(inbox, ca, {("127.0.0.1", port): profile})
    try:
        await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        assert await asyncio.wait_for(peer.received.get(), 5) == OPTIONS
    finally:
        await transport.close()


async def test_mutual_tls_presents_the_gateways_client_certificate(
    peer: Peer, ca: CertAuthority, inbox: Inbox, tmp_path: Path
) -> None:
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    port = await peer.start(server_context(ca.issue("gateway"), client_ca=carrier_ca))
    ours = carrier_ca.issue("edge-client", hosts=("edge.example.com",), client=True)
    profile = ClientProfile(certificate=str(ours.cert), private_key=str(ours.key))
    transport = client(inbox, ca, {("127.0.0.1", port): profile})
    try:
        await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        assert await asyncio.wait_for(peer.received.get(), 5) == OPTIONS
        presented = peer.client_certs[0]
        assert presented is not None
        assert presented["subject"] == ((("commonName", "edge.example.com"),),)
    finally:
        await transport.close()


def refusals() -> float:
    """Handshakes that failed because the peer refused us: its alert, or its reset."""
    return failures("peer_alert") + failures("closed")


async def refused_after_the_handshake(
    ca: CertAuthority, tmp_path: Path, present: str
) -> tuple[bool, str]:
    """A TLS 1.3 gateway requiring a client certificate from its carrier's CA; we present
    none (`present` "none") or one of another CA ("other"). Whether the send itself went
    through (TLS 1.3: our handshake ends first), and `vetted`'s error."""
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    context = server_context(ca.issue("gateway"), client_ca=carrier_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    peer = Peer()
    port = await peer.start(context)
    profiles = {}
    if present == "other":
        other = CertAuthority(tmp_path / "other", "Other CA").issue("edge-client", client=True)
        profiles[("127.0.0.1", port)] = ClientProfile(
            certificate=str(other.cert), private_key=str(other.key)
        )
    transport = client(Inbox(), ca, profiles)
    try:
        connection = await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        with pytest.raises(TransportError) as refused:
            await asyncio.wait_for(transport.vetted(connection), 10)
        assert peer.received.empty()
        return connection.peer == ("127.0.0.1", port), str(refused.value)
    finally:
        await transport.close()
        await peer.close()


@pytest.mark.parametrize("present", ["none", "other"])
async def test_a_tls13_gateway_refusing_our_certificate_after_the_handshake_is_a_transport_error(
    ca: CertAuthority, tmp_path: Path, present: str
) -> None:
    """The refusal comes after our handshake ended: the send goes through, then `vetted`
    fails as a connect would (the call fails over at once), counted as a failed handshake."""
    before = refusals()
    sent, error = await refused_after_the_handshake(ca, tmp_path, present)
    assert sent
    assert "refused after the handshake" in error
    assert refusals() == before + 1


def test_the_refusal_after_the_handshake_is_seen_on_uvloop(
    ca: CertAuthority, tmp_path: Path
) -> None:
    """The edge's loop: the refusal shows as the peer's alert, a reset or a plain close,
    depending on the loop and on timing; each is the same transport error and count."""
    before = refusals()
    sent, error = uvloop.run(refused_after_the_handshake(ca, tmp_path, "none"))
    assert sent and "refused after the handshake" in error
    assert refusals() == before + 1


async def test_a_tls13_gateway_that_takes_our_certificate_is_vetted_by_its_answer(
    peer: Peer, ca: CertAuthority, inbox: Inbox, tmp_path: Path
) -> None:
    """Positive control: the same gateway given a certificate of its CA answers, and the
    answer settles the connection (no wait for the quiet period); nothing is counted."""
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    context = server_context(ca.issue("gateway"), client_ca=carrier_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    port = await peer.start(context)
    ours = carrier_ca.issue("edge-client", client=True)
    profile = ClientProfile(certificate=str(ours.cert), private_key=str(ours.key))
    files = TlsFiles(ca=str(ca.cert), handshake_timeout=60.0)
    transport = TlsTransport(inbox, TlsContexts(files), profiles={("127.0.0.1", port): profile}.get)
    before = refusals()
    try:
        connection = await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        await asyncio.wait_for(transport.vetted(connection), 10)  # long before the 60 s
        data, _source, _ = await inbox.get()
        assert data == OK
        assert refusals() == before
    finally:
        await transport.close()


async def test_a_tls13_gateway_that_stays_quiet_is_not_taken_for_a_refusal(
    ca: CertAuthority, inbox: Inbox
) -> None:
    """A gateway that took us but does not answer (yet): after the handshake time the
    connection counts as accepted; the request's own timers handle the silence."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    context = server_context(ca.issue("gateway"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    server = await asyncio.start_server(silent, "127.0.0.1", 0, ssl=context)
    port = int(server.sockets[0].getsockname()[1])
    transport = TlsTransport(inbox, TlsContexts(TlsFiles(ca=str(ca.cert), handshake_timeout=0.3)))
    before = refusals()
    try:
        connection = await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        await asyncio.wait_for(transport.vetted(connection), 10)
        assert connection.open and refusals() == before
    finally:
        await transport.close()
        server.close()


async def test_a_client_certificate_named_in_the_settings_is_presented(
    peer: Peer, ca: CertAuthority, inbox: Inbox, tmp_path: Path
) -> None:
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    port = await peer.start(server_context(ca.issue("gateway"), client_ca=carrier_ca))
    ours = carrier_ca.issue("edge-client", hosts=("edge.example.com",), client=True)
    files = TlsFiles(ca=str(ca.cert), client_certs={"carrier": (str(ours.cert), str(ours.key))})
    profiles = {
        ("127.0.0.1", port): ClientProfile(certificate_name="carrier"),
        ("127.0.0.1", 5061): ClientProfile(certificate_name="nobody"),
    }
    transport = TlsTransport(inbox, TlsContexts(files), profiles=profiles.get)
    try:
        await transport.send(OPTIONS, Destination("tls", "127.0.0.1", port))
        assert await asyncio.wait_for(peer.received.get(), 5) == OPTIONS
        assert peer.client_certs[0] is not None
        with pytest.raises(TransportError, match="'nobody' is not in CALLMESH_TLS_CLIENT_CERTS"):
            await transport.send(OPTIONS, Destination("tls", "127.0.0.1", 5061))
    finally:
        await transport.close()


def test_the_tls_settings_reach_the_transport() -> None:
    settings = Settings(
        tls_ca="/etc/ca.pem",
        tls_client_certs="c1=/etc/c1.crt:/etc/c1.key",
        tls_handshake_timeout=2.5,
    )
    files = TlsFiles.of(settings)
    assert (files.ca, files.handshake_timeout) == ("/etc/ca.pem", 2.5)
    assert files.client_certs == {"c1": ("/etc/c1.crt", "/etc/c1.key")}


async def test_a_missing_client_certificate_file_is_a_transport_error_naming_it(
    ca: CertAuthority, inbox: Inbox
) -> None:
    profile = ClientProfile(certificate="/nonexistent/edge.crt", private_key="/nonexistent/k")
    transport = client(inbox, ca, {("127.0.0.1", 5061): profile})
    try:
        with pytest.raises(TransportError, match=r"/nonexistent/edge\.crt"):
            await transport.send(OPTIONS, Destination("tls", "127.0.0.1", 5061))
    finally:
        await transport.close()


async def exchange_over_the_hub(ca: CertAuthority, edge_cert: Issued) -> None:
    """A hub with a TLS listener: a client's message in, the answer back, and the hub as a
    client of its own listener (both directions of the adapter)."""
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), str(ca.cert), handshake_timeout=2.0)
    inbox = Inbox()
    transports = await Transports.open([ListenAddress("tls", "127.0.0.1", 0)], inbox, tls=files)
    try:
        (listener,) = transports.listeners
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=client_context(ca), server_hostname="127.0.0.1"
        )
        writer.write(OPTIONS)
        data, source, _ = await inbox.get()
        assert data == OPTIONS
        await transports.send(OK, source)
        assert await asyncio.wait_for(reader.readexactly(len(OK)), 5) == OK
        writer.close()
        await transports.send(OPTIONS, Destination("tls", "127.0.0.1", listener.port))
        data, source, _ = await inbox.get()
        assert data == OPTIONS and source.transport == "tls"
    finally:
        await transports.close()


def test_the_tls_adapter_runs_on_uvloop(ca: CertAuthority, edge_cert: Issued) -> None:
    uvloop.run(exchange_over_the_hub(ca, edge_cert))


async def test_a_tls_listener_without_a_certificate_is_refused_at_start(tmp_path: Path) -> None:
    missing = TlsFiles(str(tmp_path / "edge.crt"), str(tmp_path / "edge.key"))
    with pytest.raises(TlsConfigError, match=r"edge\.crt"):
        await Transports.open([ListenAddress("tls", "127.0.0.1", 0)], Inbox(), tls=missing)


async def test_crlf_pings_over_tls_whose_pongs_are_never_read_are_cut(
    inbox: Inbox, ca: CertAuthority, edge_cert: Issued
) -> None:
    """The unread limit counts what waits under the TLS session too (its records' bytes)."""
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), handshake_timeout=2.0)
    transport = TlsTransport(inbox, TlsContexts(files), TransportLimits(max_unsent=64 * 1024))
    listener = await transport.listen("127.0.0.1", 0)
    before = stalled("tls")
    try:
        small_send_buffers(transport)
        sent = await flood_unread(listener.port, OPTIONS, b"\r\n\r\n", context=client_context(ca))
        assert sent < FLOOD_BOUND  # cut (what the kernel's buffers hold is sent before)
        await until(lambda: len(transport) == 0)
        assert stalled("tls") == before + 1
    finally:
        await transport.close()


ALLOW_CLIENT_RENEGOTIATION = 0x100
"""OpenSSL 3's SSL_OP_ALLOW_CLIENT_RENEGOTIATION: what OpenSSL 1.1.1 does by default."""


async def renegotiate(port: int, rounds: int) -> str:
    """`openssl s_client` over TLS 1.2 asking for `rounds` renegotiations, then one message;
    what it printed."""
    client = await asyncio.create_subprocess_exec(
        *("openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        await asyncio.sleep(0.5)  # its handshake
        for _ in range(rounds):
            client.stdin.write(b"R\n")  # s_client's command: renegotiate
            await client.stdin.drain()
            await asyncio.sleep(0.3)
        client.stdin.write(OPTIONS + b"\r\n")
        await client.stdin.drain()
        await asyncio.sleep(0.3)
        client.stdin.close()
    except ConnectionError:
        pass  # s_client has gone: the server cut it
    output = await asyncio.wait_for(client.stdout.read(), 10)
    await asyncio.wait_for(client.wait(), 10)
    return output.decode(errors="replace")


async def test_a_client_asking_to_renegotiate_is_cut_even_where_openssl_allows_it(
    inbox: Inbox,
    ca: CertAuthority,
    edge_cert: Issued,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each renegotiation is a handshake's cost to us, beyond the handshake timeout and the
    flood check; OpenSSL 1.1.1 allows it (here: its option, set as such a build would)."""
    permissive = tls_context.server_context

    def as_openssl_1_1(files: TlsFiles) -> ssl.SSLContext:
        context = permissive(files)
        context.options |= ALLOW_CLIENT_RENEGOTIATION
        return context

    monkeypatch.setattr(tls_context, "server_context", as_openssl_1_1)
    files = TlsFiles(str(edge_cert.cert), str(edge_cert.key), handshake_timeout=2.0)
    transport = TlsTransport(inbox, TlsContexts(files))
    listener = await transport.listen("127.0.0.1", 0)
    try:
        for _ in range(3):
            printed = await renegotiate(listener.port, rounds=3)
            assert "no renegotiation" in printed, printed
        assert inbox.queue.empty()  # no message after a refused renegotiation
        await until(lambda: len(transport) == 0)
        lines = [r for r in caplog.records if r.name == "shared.sip.transport.tls"]
        assert len(lines) == 1 and not lines[0].exc_info  # one line for the three
        assert "; closing (0 more" in lines[0].getMessage()
    finally:
        await transport.close()
