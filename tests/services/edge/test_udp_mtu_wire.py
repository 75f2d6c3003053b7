"""RFC 3261 §18.1.1 on a real edge: a large request leaves by TCP, and
by UDP again when the gateway refuses the TCP connection.  Raw sockets, each with a timeout."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from deploy.labs.ports import free_port
from shared.sip.message import Request, parse_message
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    SipClient,
    running_edge,
    sip_request,
    status_of,
)
from tests.services.edge.test_protection_wire import metric

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


def test_a_request_over_a_datagram_to_a_udp_only_hop_is_warned_counted_and_failed(
    edge: Edge,
) -> None:
    port = free_port()
    edge.put(
        {
            "gateways/mtu3": {"address": f"sip:{LOOPBACK}:{port};transport=udp"},
            "rules/mtu3": {"group": "0", "prefix": "1803", "priority": 0, "gateways": ["mtu3"]},
        }
    )
    caller = SipClient(edge.sip_port, "tcp")
    try:
        uri = f"sip:18035550001@{LOOPBACK}:{edge.sip_port}"
        body = b"v=0\r\na=x-padding:" + b"p" * 65_000 + b"\r\n"
        invite = sip_request("INVITE", uri, "tcp", caller.port, call_id=uuid.uuid4().hex)
        caller.send(invite.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body)
        assert status_of(caller.final()) == 500  # the only gateway failed: 503 → 500 (§16.7)
    finally:
        caller.close()
    assert metric(edge, 'callmesh_sip_udp_oversize_total{kind="request"}') == 1
    [line] = [line for line in edge.log().splitlines() if "a datagram holds" in line]
    assert '"level":"warning"' in line
    assert f"request to 127.0.0.1:{port} is over the 65507 bytes a datagram holds" in line
