"""Protection on the wire: a flooding source blocked while others go on; trusted vs untrusted."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    running_edge,
    sip_request,
    sipp,
    status_of,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

LIMIT = 20
FLOODER, OTHER = "127.0.0.3", "127.0.0.2"
DROPPED = "callmesh_edge_flood_dropped_total"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-protection")


@pytest.fixture(scope="module")
def edge(workdir: Path) -> Iterator[Edge]:
    # Only 127.0.0.1 is trusted: 127.0.0.2 and .3 are strangers.
    with running_edge(
        workdir,
        trusted_networks="127.0.0.1/32",
        pike_limit=str(LIMIT),
        pike_period="10",
    ) as running:
        yield running


def peer(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.5)
    return sock


def ask(sock: socket.socket, edge: Edge, message: bytes) -> bytes | None:
    sock.sendto(message, (LOOPBACK, edge.sip_port))
    try:
        return sock.recv(65535)
    except TimeoutError:
        return None


def options(sock: socket.socket, edge: Edge) -> bytes:
    port = sock.getsockname()[1]
    return sip_request("OPTIONS", f"sip:{LOOPBACK}:{edge.sip_port}", "udp", port)


def metric(edge: Edge, name: str) -> float:
    with edge.http() as client:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_flooder_is_blocked_while_other_sources_go_on(edge: Edge, workdir: Path) -> None:
    flooder, other = peer(FLOODER), peer(OTHER)
    try:
        flooder.settimeout(10.0)  # a bound for a broken edge, not a window that decides
        for i in range(10 * LIMIT):
            flooder.sendto(options(flooder, edge), (LOOPBACK, edge.sip_port))
            if i % 20 == 0:  # the other stranger, well under the limit, is answered
                reply = ask(other, edge, options(other, edge))
                assert reply is not None and status_of(reply) == 200
        for _ in range(LIMIT):  # the first LIMIT requests are answered...
            assert status_of(flooder.recv(65535)) == 200
        # ...and no more, then or on a new request: the other's answer, asked after the edge
        # took every flooder request (one socket, in order), is the control that any answer
        # to them would be here by now.
        flooder.sendto(options(flooder, edge), (LOOPBACK, edge.sip_port))
        reply = ask(other, edge, options(other, edge))
        assert reply is not None and status_of(reply) == 200
        flooder.setblocking(False)
        with pytest.raises(BlockingIOError):
            flooder.recv(65535)
        assert metric(edge, "callmesh_edge_sources_blocked_total") == 1
    finally:
        flooder.close()
        other.close()
    port = free_port()  # a trusted caller's call still completes
    edge.route({"p1": port}, {"p1": ("1701", ["p1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(workdir, "caller", free_port(), remote=edge.sip_port, args=("-s", "17015550001"))
    assert caller.wait() == 0, edge.log()
    assert gateway.wait() == 0


def flood(sock: socket.socket, edge: Edge, count: int, within: float = 10.0) -> int:
    """Send `count` OPTIONS at once; how many were answered.

    Read until every request is accounted for, answered here or counted dropped by the
    edge (a blocked source's), not for a fixed window: a busy edge may answer slower than
    any window, and once all are counted no further answer can come."""
    dropped = metric(edge, DROPPED)
    for _ in range(count):
        sock.sendto(options(sock, edge), (LOOPBACK, edge.sip_port))
    answered = 0
    deadline = time.monotonic() + within
    sock.settimeout(0.1)
    try:
        while answered + metric(edge, DROPPED) - dropped < count:
            assert time.monotonic() < deadline, f"{answered} answered, the rest never counted"
            try:
                while True:
                    sock.recv(65535)
                    answered += 1
            except TimeoutError:
                pass
    finally:
        sock.settimeout(0.5)
    return answered


def answered_within(sock: socket.socket, edge: Edge, within: float = 5.0) -> bool:
    """Ask until an answer comes (a clear reaches the edge's workers in milliseconds)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ask(sock, edge, options(sock, edge)) is not None:
            return True
    return False


def test_the_api_lists_and_lifts_a_flood_block_and_allow_lists_a_network(edge: Edge) -> None:
    blocked, allowed = peer("127.0.0.5"), peer("127.0.0.6")
    try:
        assert flood(blocked, edge, 2 * LIMIT) == LIMIT
        with edge.http() as api:
            deadline = time.monotonic() + 10
            items: list[dict[str, object]] = []
            while not items and time.monotonic() < deadline:
                items = api.get("/v1/protection/blocks?kind=flood").json()["items"]
                items = [item for item in items if item["key"] == "127.0.0.5"]
            assert items and items[0]["edge"], items
            assert flood(blocked, edge, 1) == 0  # still blocked: counted dropped
            assert api.delete("/v1/protection/blocks/flood/127.0.0.5").status_code == 204
            assert answered_within(blocked, edge)
            body = {"network": "127.0.0.6/32", "description": "the operator's own svmap"}
            assert api.put("/v1/protection/allowlist/ops", json=body).status_code == 200
            # Never counted once the allow-list reached the edge (a flood before that is
            # blocked, and lifted when it arrives).
            deadline = time.monotonic() + 10
            while flood(allowed, edge, 3 * LIMIT) != 3 * LIMIT:
                assert time.monotonic() < deadline, "the allow-list never applied"
    finally:
        blocked.close()
        allowed.close()


def test_untrusted_source_may_not_call_numbers(edge: Edge) -> None:
    port = free_port()
    edge.route({"p2": port}, {"p2": ("1702", ["p2"])})
    stranger = peer("127.0.0.4")
    try:
        local = stranger.getsockname()[1]
        invite = sip_request(
            "INVITE",
            f"sip:17025550001@{LOOPBACK}:{edge.sip_port}",
            "udp",
            local,
            call_id=uuid.uuid4().hex,
        )
        reply = ask(stranger, edge, invite)
        while reply is not None and reply.startswith(b"SIP/2.0 1"):
            reply = stranger.recv(65535)
        assert reply is not None and status_of(reply) == 403
    finally:
        stranger.close()
