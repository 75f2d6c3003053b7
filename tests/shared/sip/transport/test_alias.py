"""RFC 5923 aliasing: a verified TLS peer's `alias` lets our requests for its sent-by use its
connection; an unverified one, a mismatched name, plain TCP or no `alias` never do.

The peers are Python `ssl` clients on loopback with certificates from the tests' CA; the
sent-by port has nothing listening, so a request that is not aliased cannot connect."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy.labs.certificates import CertAuthority, Issued
from deploy.labs.ports import free_port
from shared.sip.transport.alias import alias_addresses, certificate_names
from shared.sip.transport.base import TransportError
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpTransport
from shared.sip.transport.tls import MAX_ALIASES, TlsTransport
from shared.sip.transport.tls_context import TlsContexts, TlsFiles
from shared.sip.transport.ws import WssTransport
from tests.shared.bus.support import until
from tests.shared.sip.transport.support import Inbox

SBC = frozenset({"sbc.test", "127.0.0.1"})
BYE = b"BYE sip:edge.test SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"


def request(via: str) -> bytes:
    return (
        f"OPTIONS sip:edge.test SIP/2.0\r\nVia: {via}\r\nCall-ID: alias-test\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


# ----- the decision, on its own ----------------------------------------------------------


def test_a_certificate_names_its_dns_and_ip_alternative_names_not_wildcards() -> None:
    names = certificate_names(
        {
            "subject": ((("commonName", "ignored.test"),),),
            "subjectAltName": (
                ("DNS", "SBC.Test"),
                ("DNS", "*.carrier.test"),
                ("IP Address", "2001:DB8:0:0:0:0:0:1\n"),
                ("IP Address", "192.0.2.7"),
            ),
        }
    )
    assert names == {"sbc.test", "2001:db8::1", "192.0.2.7"}
    # The Common Name counts only without subjectAltName (RFC 5922 §7.1).
    assert certificate_names({"subject": ((("commonName", "cn.test"),),)}) == {"cn.test"}
    assert certificate_names({}) == frozenset()


def test_alias_is_the_source_address_and_the_name_with_the_via_port() -> None:
    via = "SIP/2.0/TLS sbc.test:5071;alias;branch=z9hG4bK1"
    assert alias_addresses(request(via), "198.51.100.9", SBC) == (
        ("198.51.100.9", 5071),
        ("sbc.test", 5071),
    )
    default_port = "SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1;alias"
    assert alias_addresses(request(default_port), "127.0.0.1", SBC) == (("127.0.0.1", 5061),)


@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/TLS sbc.test:5071;branch=z9hG4bK1",  # no alias asked
        "SIP/2.0/TLS other.test:5071;alias;branch=z9hG4bK1",  # not the certificate's name
        "SIP/2.0/TLS 192.0.2.8:5071;alias;branch=z9hG4bK1",  # nor its address
        "SIP/2.0/TCP sbc.test:5071;alias;branch=z9hG4bK1",  # not TLS
        "SIP/2.0/TLS sbc.test:99999;alias",  # not a Via
    ],
)
def test_no_alias_without_the_parameter_a_matching_identity_or_tls(via: str) -> None:
    assert alias_addresses(request(via), "127.0.0.1", SBC) == ()


def test_no_alias_from_an_unverified_peer_or_a_response() -> None:
    via = "SIP/2.0/TLS sbc.test:5071;alias;branch=z9hG4bK1"
    assert alias_addresses(request(via), "127.0.0.1", frozenset()) == ()
    response = b"SIP/2.0 200 OK\r\nVia: " + via.encode() + b"\r\nContent-Length: 0\r\n\r\n"
    assert alias_addresses(response, "127.0.0.1", SBC) == ()


# ----- on the wire: a TLS listener asking for client certificates --------------------------


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return CertAuthority(tmp_path / "ca")


def files(ca: CertAuthority, verify: str = "optional") -> TlsFiles:
    edge = ca.issue("edge")
    return TlsFiles(str(edge.cert), str(edge.key), str(ca.cert), verify_clients=verify)


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox, ca: CertAuthority) -> AsyncIterator[TlsTransport]:
    transport = TlsTransport(inbox, TlsContexts(files(ca)))
    yield transport
    await transport.close()


def client_context(ca: CertAuthority, issued: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


async def connect(
    port: int, ca: CertAuthority, issued: Issued | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca, issued), server_hostname="127.0.0.1"
    )


async def test_a_verified_peers_alias_carries_our_requests_to_its_sent_by(
    server: TlsTransport, inbox: Inbox, ca: CertAuthority
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    sent_by = free_port()  # nothing listens there: only the alias can carry the BYE
    sbc = ca.issue("sbc", hosts=("sbc.test", "127.0.0.1"), client=True)
    reader, writer = await connect(listener.port, ca, sbc)
    writer.write(request(f"SIP/2.0/TLS sbc.test:{sent_by};alias;branch=z9hG4bK1"))
    await inbox.get()
    for host in ("127.0.0.1", "sbc.test"):  # its address and its name, with the Via's port
        await server.send(BYE, Destination("tls", host, sent_by))
        assert await asyncio.wait_for(reader.readexactly(len(BYE)), 5) == BYE
    assert len(server) == 1
    writer.close()
    await until(lambda: len(server) == 0)
    # The alias lives as long as its connection: now the BYE has nowhere to go.
    with pytest.raises(TransportError):
        await server.send(BYE, Destination("tls", "127.0.0.1", sent_by))


@pytest.mark.parametrize("case", ["no certificate", "another name", "no alias parameter"])
async def test_an_unproven_peer_gets_no_alias(
    server: TlsTransport, inbox: Inbox, ca: CertAuthority, case: str
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    sent_by = free_port()
    issued = {
        "no certificate": None,
        "another name": ca.issue("other", hosts=("other.test",), client=True),
        "no alias parameter": ca.issue("sbc", hosts=("sbc.test",), client=True),
    }[case]
    alias = "" if case == "no alias parameter" else ";alias"
    _, writer = await connect(listener.port, ca, issued)
    writer.write(request(f"SIP/2.0/TLS sbc.test:{sent_by}{alias};branch=z9hG4bK1"))
    await inbox.get()
    with pytest.raises(TransportError):
        await server.send(BYE, Destination("tls", "sbc.test", sent_by))
    with pytest.raises(TransportError):
        await server.send(BYE, Destination("tls", "127.0.0.1", sent_by))
    writer.close()


async def test_a_listener_not_asking_for_certificates_aliases_nothing(
    inbox: Inbox, ca: CertAuthority
) -> None:
    transport = TlsTransport(inbox, TlsContexts(files(ca, verify="off")))
    try:
        listener = await transport.listen("127.0.0.1", 0)
        sent_by = free_port()
        sbc = ca.issue("sbc", hosts=("sbc.test", "127.0.0.1"), client=True)
        _, writer = await connect(listener.port, ca, sbc)  # presented, never asked for
        writer.write(request(f"SIP/2.0/TLS 127.0.0.1:{sent_by};alias;branch=z9hG4bK1"))
        await inbox.get()
        with pytest.raises(TransportError):
            await transport.send(BYE, Destination("tls", "127.0.0.1", sent_by))
        writer.close()
    finally:
        await transport.close()


async def test_plain_tcp_aliases_nothing(inbox: Inbox) -> None:
    transport = TcpTransport(inbox)
    try:
        listener = await transport.listen("127.0.0.1", 0)
        sent_by = free_port()
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(request(f"SIP/2.0/TLS 127.0.0.1:{sent_by};alias;branch=z9hG4bK1"))
        await inbox.get()
        with pytest.raises(TransportError):
            await transport.send(BYE, Destination("tcp", "127.0.0.1", sent_by))
        writer.close()
    finally:
        await transport.close()


async def test_a_certificate_that_does_not_verify_fails_the_handshake_even_when_optional(
    server: TlsTransport, tmp_path: Path, ca: CertAuthority
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    rogue = CertAuthority(tmp_path / "rogue", "Rogue CA").issue("phone", client=True)
    reader, writer = await connect(listener.port, ca, rogue)  # TLS 1.3: refused after
    writer.write(request("SIP/2.0/TLS 127.0.0.1:5071;branch=z9hG4bK1"))
    with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    await until(lambda: len(server) == 0)


async def test_required_client_certificates_refuse_a_peer_without_one(
    inbox: Inbox, ca: CertAuthority
) -> None:
    transport = TlsTransport(inbox, TlsContexts(files(ca, verify="required")))
    try:
        listener = await transport.listen("127.0.0.1", 0)
        sbc = ca.issue("sbc", hosts=("sbc.test",), client=True)
        _, writer = await connect(listener.port, ca, sbc)  # positive control
        writer.write(request("SIP/2.0/TLS sbc.test:5071;branch=z9hG4bK1"))
        await inbox.get()
        writer.close()
        reader, bare = await connect(listener.port, ca, None)  # TLS 1.3: refused after
        bare.write(request("SIP/2.0/TLS sbc.test:5071;branch=z9hG4bK2"))
        with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        assert inbox.queue.empty()
    finally:
        await transport.close()


async def test_a_wss_listener_never_asks_for_a_certificate(inbox: Inbox, ca: CertAuthority) -> None:
    contexts = TlsContexts(files(ca))
    wss = WssTransport(inbox, contexts)
    try:
        assert contexts.server().verify_mode == ssl.CERT_OPTIONAL
        assert contexts.server(ask_clients=False).verify_mode == ssl.CERT_NONE
        assert not wss.asks_clients
    finally:
        await wss.close()


async def test_one_peer_holds_at_most_max_aliases(
    server: TlsTransport, inbox: Inbox, ca: CertAuthority
) -> None:
    listener = await server.listen("127.0.0.1", 0)
    sbc = ca.issue("sbc", hosts=("127.0.0.1",), client=True)
    _, writer = await connect(listener.port, ca, sbc)
    for port in range(40000, 40000 + MAX_ALIASES + 3):
        writer.write(request(f"SIP/2.0/TLS 127.0.0.1:{port};alias;branch=z9hG4bK{port}"))
        await inbox.get()
    (connection,) = server.connections()
    assert len(connection.aliases) == MAX_ALIASES
    writer.close()
