"""On a real edge process: one address cannot lock TCP out for everyone.

The attackers are other loopback addresses (127.0.0.3-5, untrusted: only
127.0.0.1 is); the victim is 127.0.0.2.  Every socket has a timeout and every
loop a bound.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.services.edge.support import LOOPBACK, Edge, running_edge, sip_request, status_of
from tests.services.edge.test_protection_wire import metric

pytestmark = [pytest.mark.wire, pytest.mark.integration]

TOTAL, PER_SOURCE, PIKE, DEADLINE = 8, 4, 20, 1.0
VICTIM = "127.0.0.2"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(
        tmp_path_factory.mktemp("edge-tcp"),
        trusted_networks="127.0.0.1/32",
        tcp_max_connections=str(TOTAL),
        tcp_max_connections_per_source=str(PER_SOURCE),
        tcp_message_timeout=str(DEADLINE),
        pike_limit=str(PIKE),
        pike_period="10",
    ) as running:
        yield running


def connect(edge: Edge, host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.bind((host, 0))
    sock.connect((LOOPBACK, edge.sip_port))
    return sock


def closed_by_edge(sock: socket.socket) -> bool:
    try:
        return sock.recv(65535) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def options(sock: socket.socket, edge: Edge) -> bytes:
    port = sock.getsockname()[1]
    return sip_request("OPTIONS", f"sip:{LOOPBACK}:{edge.sip_port}", "tcp", port)


def answered(edge: Edge, host: str) -> int | None:
    """The status of an OPTIONS from `host` over a new TCP connection (None: closed on it)."""
    sock = connect(edge, host)
    try:
        sock.sendall(options(sock, edge))
        reply = sock.recv(65535)
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        sock.close()
    return status_of(reply) if reply else None


def test_half_sent_connections_from_one_address_leave_room_for_others(edge: Edge) -> None:
    attack = [connect(edge, "127.0.0.3") for _ in range(TOTAL + 2)]
    try:
        for sock in attack:
            sock.sendall(options(sock, edge)[:40])  # never finished
        assert all(closed_by_edge(sock) for sock in attack[PER_SOURCE:])
        assert answered(edge, VICTIM) == 200  # while the attacker's first ones are held
        assert metric(edge, 'callmesh_sip_tcp_refused_total{reason="source_limit"}') >= 2
    finally:
        for sock in attack:
            sock.close()


def test_a_trickle_is_cut_at_the_message_deadline(edge: Edge) -> None:
    slow = connect(edge, "127.0.0.4")
    slow.settimeout(0.2)
    started = time.monotonic()
    try:
        for byte in options(slow, edge)[:30]:  # a byte per 0.2 s, for at most 6 s
            slow.sendall(bytes([byte]))
            if closed_by_edge(slow):  # waits up to the 0.2 s pace
                break
        else:
            pytest.fail("the edge kept a trickling connection past its deadline")
        assert DEADLINE <= time.monotonic() - started < DEADLINE * 3
        assert answered(edge, VICTIM) == 200
    finally:
        slow.close()


def test_a_connection_flood_is_blocked_by_the_flood_detector(edge: Edge) -> None:
    flooder = "127.0.0.5"
    refused = 0
    for _ in range(PIKE + 5):  # each new connection counts as a request
        sock = connect(edge, flooder)
        sock.settimeout(0.5)
        try:
            refused += closed_by_edge(sock)
        finally:
            sock.close()
    assert refused >= 5
    assert metric(edge, 'callmesh_sip_tcp_refused_total{reason="flood"}') >= 5
    assert metric(edge, "callmesh_edge_sources_blocked_total") >= 1
    assert answered(edge, flooder) is None  # blocked: refused at accept
    assert answered(edge, VICTIM) == 200
