"""Pike over the cluster on the wire: two edges with two workers each, one flooder.

The flooder sends from twelve ports of one address, six to each edge (the kernel
spreads each edge's share over its two workers by port), paced at about 100
requests a second per worker for four times the limit. Counted alone, each worker
would answer up to the limit: up to 4x it in all. Counting with the cluster, the
flooder is answered about the limit (the bound of docs/limits.md for four workers),
and once blocked it is dropped by both edges while another stranger is answered, and
the block is listed by the API.
"""

from __future__ import annotations

import math
import socket
import time

import pytest

from tests.services.edge.support import LOOPBACK, Edge, sip_request, status_of
from tests.services.edge.test_limits_wire import _workdirs, edges

__all__ = ["_workdirs", "edges"]
pytestmark = [pytest.mark.wire, pytest.mark.integration]

LIMIT = 120
WORKERS = 4
FLOODER, OTHER = "127.0.0.7", "127.0.0.8"
PORTS_PER_EDGE = 6


@pytest.fixture
def edge_settings() -> dict[str, str]:
    return {
        "edge_workers": "2",
        "trusted_networks": "127.0.0.1/32",
        "pike_limit": str(LIMIT),
        "pike_period": "30",  # the flood is well inside one period: no decay to reason about
        "pike_block_time": "60",
    }


def bound_over_the_limit(rate_per_worker: float) -> int:
    """docs/limits.md: at most (2N + 1)·(ceil(L/16) + r_w·(gap + round trip)) over the limit
    (a round trip of 10 ms: generous on loopback, even on a loaded machine)."""
    unsent = math.ceil(LIMIT / 16) + rate_per_worker * (0.02 + 0.01)
    return math.ceil((2 * WORKERS + 1) * unsent)


def stranger(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def options(sock: socket.socket, edge: Edge) -> bytes:
    port = sock.getsockname()[1]
    return sip_request("OPTIONS", f"sip:{LOOPBACK}:{edge.sip_port}", "udp", port)


def answers(sock: socket.socket, within: float) -> int:
    """The answers that reach `sock` until none came for `within` seconds."""
    sock.settimeout(within)
    count = 0
    while True:
        try:
            sock.recv(65535)
        except TimeoutError:
            return count
        count += 1


def answered(sock: socket.socket, edge: Edge) -> bool:
    sock.sendto(options(sock, edge), (LOOPBACK, edge.sip_port))
    sock.settimeout(2.0)
    try:
        return status_of(sock.recv(65535)) == 200
    except TimeoutError:
        return False


def test_a_flooder_spread_over_two_edges_is_blocked_at_the_cluster_limit(
    edges: tuple[Edge, Edge],
) -> None:
    flooders = [(stranger(FLOODER), edge) for edge in edges for _ in range(PORTS_PER_EDGE)]
    other = stranger(OTHER)
    try:
        rounds = WORKERS * LIMIT // len(flooders)  # 4x the limit in all
        pause = 0.03  # 12 requests per 30 ms: ~400 a second, ~100 per worker
        deadline = time.monotonic() + 60  # a bound for a stalled machine, never reached
        for _ in range(rounds):
            for sock, edge in flooders:
                sock.sendto(options(sock, edge), (LOOPBACK, edge.sip_port))
            time.sleep(pause)
            assert time.monotonic() < deadline
        got = sum(answers(sock, 1.0) for sock, _ in flooders)
        sent = rounds * len(flooders)
        rate = len(flooders) / pause / WORKERS
        assert LIMIT <= got <= LIMIT + bound_over_the_limit(rate), (got, sent)
        assert got < 2 * LIMIT  # not the per-worker count of old (up to 4x)
        # The block holds on both edges, on every port (so on both workers of each)...
        for sock, edge in flooders:
            sock.sendto(options(sock, edge), (LOOPBACK, edge.sip_port))
        assert sum(answers(sock, 0.5) for sock, _ in flooders) == 0
        # ...while another stranger is answered by both (the control: answers do come).
        assert all(answered(other, edge) for edge in edges)
        # The block was announced (recorded, so the API lists it), whichever worker began it.
        with edges[1].http() as api:
            listed = api.get("/v1/protection/blocks?kind=flood").json()["items"]
        assert [item["key"] for item in listed] == [FLOODER], listed
    finally:
        for sock, _ in flooders:
            sock.close()
        other.close()
