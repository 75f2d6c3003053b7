"""RFC 5923 connection reuse through a real edge, both ways.

Inbound: a carrier's SBC (Python `ssl`, a client certificate from the tests' CA naming
127.0.0.1) connects to the edge's TLS listener (`CALLMESH_TLS_VERIFY_CLIENTS=optional`)
and says `alias` in its Via; a call routed to a gateway at the SBC's sent-by, where
nothing listens, reaches the SBC down its own connection. The same SBC without a
certificate gets no alias: the call cannot leave.  Outbound: a TLS gateway the edge
called sends its own request back down the edge's connection, and the edge's Via said
`alias` (the edge takes requests on a connection it opened).  On a two-worker edge the
alias serves the worker that does not hold the connection too.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.certificates import CertAuthority, Issued
from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    options,
    running_edge,
    sipp,
    status_of,
    wait_bound,
)
from tests.services.edge.test_tls_wire import tls_port
from tests.services.edge.tls_support import Answerer, Stream, answer, edge_certificates

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls-alias-wire")


@pytest.fixture(scope="module")
def ca_and_settings(workdir: Path) -> tuple[CertAuthority, dict[str, str]]:
    ca, _, settings = edge_certificates(workdir)
    return ca, {**settings, "tls_verify_clients": "optional"}


@pytest.fixture(scope="module")
def ca(ca_and_settings: tuple[CertAuthority, dict[str, str]]) -> CertAuthority:
    return ca_and_settings[0]


@pytest.fixture(scope="module")
def edge(workdir: Path, ca_and_settings: tuple[CertAuthority, dict[str, str]]) -> Iterator[Edge]:
    with running_edge(workdir, free_port(), **ca_and_settings[1]) as running:
        yield running


def sbc_connection(edge: Edge, ca: CertAuthority, issued: Issued | None) -> Stream:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    raw = socket.create_connection((LOOPBACK, tls_port(edge)), timeout=10)
    return Stream(context.wrap_socket(raw, server_hostname=LOOPBACK))


def greet(edge: Edge, stream: Stream, sent_by: int) -> Answerer:
    """The SBC's OPTIONS to the edge, its Via naming `sent_by` with `alias` (answered 200); then
    an answerer of every request the edge sends down the connection."""
    hello = options(tls_port(edge)).replace(
        b"SIP/2.0/UDP 127.0.0.1:0;", f"SIP/2.0/TLS {LOOPBACK}:{sent_by};alias;".encode()
    )
    stream.send(hello)
    assert status_of(stream.receive()) == 200
    sbc = Answerer(f"sip:sbc@{LOOPBACK}:{sent_by};transport=tls")
    sbc.serve(stream)
    return sbc


def call(edge: Edge, workdir: Path, number: str) -> int:
    caller = sipp(workdir, "caller", free_port(), remote=edge.sip_port, args=("-s", number))
    return caller.wait()


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "no-certificate"])
def test_a_verified_sbcs_alias_takes_calls_to_its_sent_by_down_its_connection(
    edge: Edge, workdir: Path, ca: CertAuthority, verified: bool
) -> None:
    sent_by = free_port()  # where the SBC says it is; nothing listens there
    issued = ca.issue(f"sbc-{sent_by}", hosts=(LOOPBACK,), client=True) if verified else None
    stream = sbc_connection(edge, ca, issued)
    try:
        sbc = greet(edge, stream, sent_by)
        prefix = "1611" if verified else "1612"
        edge.put(
            {
                f"gateways/a{prefix}": {"address": f"sips:{LOOPBACK}:{sent_by}"},
                f"rules/a{prefix}": {"prefix": prefix, "gateways": [f"a{prefix}"]},
            }
        )
        status = call(edge, workdir, f"{prefix}5550001")
        if verified:
            assert status == 0, edge.log()
            assert sbc.done.wait(10)
            assert sbc.methods() == ["INVITE", "ACK", "BYE"]
            assert f"aliased to {LOOPBACK}:{sent_by} (RFC 5923)" in edge.log()
        else:  # the negative control: no proof, no alias, so the call has nowhere to go
            assert status != 0
            assert sbc.requests == []
            assert f"tls connect to {LOOPBACK}:{sent_by}" in edge.log()
    finally:
        stream.sock.close()


WORKER_CALLS = 20
"""Calls with distinct Call-IDs on two workers: all owned by the SBC's worker has odds of 1 in
10^6, so the other worker's calls go through the alias too."""


def test_on_two_workers_each_reaches_the_sbc_through_its_alias(
    workdir: Path, ca_and_settings: tuple[CertAuthority, dict[str, str]]
) -> None:
    ca, settings = ca_and_settings
    with running_edge(workdir, free_port(), edge_workers="2", **settings) as edge:
        sent_by = free_port()
        stream = sbc_connection(edge, ca, ca.issue("sbc-workers", hosts=(LOOPBACK,), client=True))
        try:
            sbc = greet(edge, stream, sent_by)
            edge.put(
                {
                    "gateways/w1": {"address": f"sips:{LOOPBACK}:{sent_by}"},
                    "rules/w1": {"prefix": "1615", "gateways": ["w1"]},
                }
            )
            caller = sipp(
                workdir,
                "caller",
                free_port(),
                remote=edge.sip_port,
                calls=WORKER_CALLS,
                args=("-s", "16155550001", "-r", "10"),
            )
            assert caller.wait(60) == 0, edge.log()
            deadline = time.monotonic() + 10
            while sbc.methods().count("BYE") < WORKER_CALLS:
                assert time.monotonic() < deadline, sbc.methods()
                time.sleep(0.05)
            assert sbc.methods().count("INVITE") == WORKER_CALLS
        finally:
            stream.sock.close()


class CallingBackGateway:
    """A TLS gateway that answers the edge's INVITE, then sends its own OPTIONS for `number`
    to the edge down the same connection, and answers the BYE: one connection, in a thread."""

    def __init__(self, issued: Issued, edge_port: int, number: str) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(issued.cert), str(issued.key))
        self.edge_port = edge_port
        self.number = number
        self.invite = b""
        self.status = 0
        self.handshakes = 0
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            raw, _ = self.listener.accept()
            raw.settimeout(15)
            stream = Stream(self.context.wrap_socket(raw, server_side=True))
            self.handshakes += 1
            self.invite = stream.receive()
            contact = f"sip:gw@{LOOPBACK}:{self.port};transport=tls"
            stream.send(answer(self.invite, 200, "OK", contact, secrets.token_hex(4)))
            assert stream.receive().startswith(b"ACK ")
            branch = secrets.token_hex(6)
            stream.send(
                (
                    f"OPTIONS sip:{self.number}@{LOOPBACK}:{self.edge_port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/TLS {LOOPBACK}:{self.port};branch=z9hG4bK{branch}\r\n"
                    f"From: <sip:gw@{LOOPBACK}>;tag={branch}\r\nTo: <sip:{self.number}@x>\r\n"
                    f"Call-ID: back-{branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()
            )
            while not (self.status and self.done.is_set()):
                message = stream.receive()
                if message.startswith(b"SIP/2.0 ") and status_of(message) >= 200:
                    self.status = status_of(message)
                elif message.startswith(b"BYE "):
                    stream.send(answer(message, 200, "OK", contact, "bye"))
                    self.done.set()
        except (OSError, ConnectionError, AssertionError):
            self.done.set()

    def close(self) -> None:
        self.listener.close()


def test_a_tls_gateway_sends_requests_back_down_the_edges_connection(
    edge: Edge, workdir: Path, ca: CertAuthority
) -> None:
    gateway = CallingBackGateway(ca.issue("gw-back"), tls_port(edge), "16145550001")
    behind = free_port()
    answering = sipp(workdir, "gateway", behind)  # answers the OPTIONS (-aa)
    try:
        wait_bound(behind)
        edge.put(
            {
                "gateways/b1": {"address": f"sips:{LOOPBACK}:{gateway.port}"},
                "rules/b1": {"prefix": "1613", "gateways": ["b1"]},
                "gateways/b2": {"address": f"sip:{LOOPBACK}:{behind}"},
                "rules/b2": {"prefix": "1614", "gateways": ["b2"]},
            }
        )
        assert call(edge, workdir, "16135550001") == 0, edge.log()
        assert gateway.done.wait(15)
        assert gateway.status == 200, edge.log()
        assert gateway.handshakes == 1
        assert f"Via: SIP/2.0/TLS {LOOPBACK}:{tls_port(edge)};alias;branch=" in (
            gateway.invite.decode()
        )
    finally:
        answering.stop()
        gateway.close()
