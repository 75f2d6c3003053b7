"""RFC 3261 §18.1.1 on a real edge (issue 13 item 10): a large request leaves by TCP, and
by UDP again when the gateway refuses the TCP connection.  Raw sockets, each with a timeout."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from shared.sip.message import Request, parse_message
from tests.services.edge.support import LOOPBACK, Edge, free_port, running_edge, sip_request

pytestmark = [pytest.mark.wire, pytest.mark.integration]

SDP = "v=0\r\na=x-padding:" + "p" * 1500 + "\r\n"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("edge-mtu")) as running:
        yield running


def call(edge: Edge, number: str) -> socket.socket:
    """A caller over UDP sending a 1.6 KB INVITE to `number`."""
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind((LOOPBACK, 0))
    uri = f"sip:{number}@{LOOPBACK}:{edge.sip_port}"
    extra = "Content-Type: application/sdp\r\n"
    local = caller.getsockname()[1]
    invite = sip_request("INVITE", uri, "udp", local, call_id=uuid.uuid4().hex, extra=extra)
    invite = invite.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(SDP))
    caller.sendto(invite + SDP.encode(), (LOOPBACK, edge.sip_port))
    return caller


def read_request(sock: socket.socket) -> Request:
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + len(SDP):
        chunk = sock.recv(65535)
        assert chunk, "the edge closed the connection before the whole INVITE"
        data += chunk
    message = parse_message(data, stream=True)
    assert isinstance(message, Request)
    return message


def test_a_large_invite_goes_to_the_gateway_by_tcp(edge: Edge) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as gateway:
        gateway.bind((LOOPBACK, port))
        gateway.listen()
        gateway.settimeout(5)
        edge.route({"mtu1": port}, {"mtu1": ("1801", ["mtu1"])})
        caller = call(edge, "18015550001")
        try:
            connection, _ = gateway.accept()
            with connection:
                connection.settimeout(5)
                request = read_request(connection)
        finally:
            caller.close()
    assert request.method == "INVITE"
    assert request.vias[0].transport == "TCP"
    assert request.body == SDP.encode()


def test_a_refused_tcp_connection_falls_back_to_udp(edge: Edge) -> None:
    port = free_port()  # free for TCP too: the edge's connect is refused at once
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gateway:
        gateway.bind((LOOPBACK, port))
        gateway.settimeout(5)
        edge.route({"mtu2": port}, {"mtu2": ("1802", ["mtu2"])})
        caller = call(edge, "18025550001")
        try:
            message = parse_message(gateway.recv(65535))
        finally:
            caller.close()
    assert isinstance(message, Request)
    assert message.vias[0].transport == "UDP"
    assert message.body == SDP.encode()
