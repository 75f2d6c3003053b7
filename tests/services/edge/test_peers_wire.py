"""Peers on a running edge: one added, changed and removed through the API changes the
trust and the routing group of its calls at once, without a restart; and a peer's change
reaches every worker of two edges at once (the 100 ms target is printed, the test guards
against seconds)."""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    SipClient,
    running_edge,
    sip_request,
    status_of,
)
from tests.services.edge.test_limits_wire import _workdirs, edge_settings, edges

pytestmark = [pytest.mark.wire, pytest.mark.integration]

__all__ = ["_workdirs", "edge_settings", "edges"]  # two edges of two workers, shared

NUMBER = "442071234567"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    # Loopback is nobody's until a peer says so: no bootstrap trust or profile covers it.
    with running_edge(tmp_path, trusted_networks="192.0.2.1/32") as running:
        yield running


class Gateway:
    """A UDP socket on loopback answering every INVITE with 486 (a thread), so each call ends
    at once; `calls` are the Call-IDs of the INVITEs it took."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.port = free_port()
        self.sock.bind((LOOPBACK, self.port))
        self.sock.settimeout(0.05)
        self.calls: set[str] = set()
        self._open = True
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        while self._open:
            try:
                data, sender = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if data.startswith(b"INVITE "):
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"call-id:"):
                        self.calls.add(line.split(b":", 1)[1].strip().decode())
                self.sock.sendto(busy(data), sender)

    def close(self) -> None:
        self._open = False
        self._thread.join(timeout=5)
        self.sock.close()


def busy(invite: bytes) -> bytes:
    head = invite.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    kept = [line for line in head if line.split(b":", 1)[0].lower() in KEPT]
    kept = [line + b";tag=gw" if line.lower().startswith(b"to:") else line for line in kept]
    return b"\r\n".join([b"SIP/2.0 486 Busy Here", *kept, b"Content-Length: 0", b"", b""])


KEPT = {b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq"}


def call(edge: Edge, gateways: dict[str, Gateway]) -> tuple[int, list[str]]:
    """An INVITE from loopback to NUMBER: the edge's final answer and which gateways saw it."""
    client = SipClient(edge.sip_port)
    call_id = uuid.uuid4().hex
    try:
        uri = f"sip:{NUMBER}@{LOOPBACK}:{edge.sip_port}"
        client.send(sip_request("INVITE", uri, "udp", client.port, call_id=call_id))
        status = status_of(client.final())
    finally:
        client.close()
    return status, [name for name, gateway in gateways.items() if call_id in gateway.calls]


def test_a_peer_added_changed_and_removed_changes_trust_and_group_at_once(edge: Edge) -> None:
    gateways = {"g0": Gateway(), "g7": Gateway()}
    try:
        edge.route({name: gw.port for name, gw in gateways.items()}, {"uk": ("44", ["g0"])})
        edge.put({"rules/uk7": {"group": "7", "prefix": "44", "gateways": ["g7"]}})
        refused, _ = call(edge, gateways)
        assert refused in (401, 403, 407), edge.log()  # a stranger must authenticate first

        peer = {"addresses": [f"udp:{LOOPBACK}/32"], "trusted": True, "group": "7"}
        edge.put({"peers/pbx": peer})
        assert call(edge, gateways) == (486, ["g7"]), edge.log()

        edge.put({"peers/pbx": {**peer, "group": "0"}})
        assert call(edge, gateways) == (486, ["g0"]), edge.log()

        with edge.http(edge.routing_port) as client:
            reply = client.delete("/v1/peers/pbx")
            reply.raise_for_status()
        edge.wait_routed(reply.json()["version"])
        assert call(edge, gateways)[0] == refused
    finally:
        for gateway in gateways.values():
            gateway.close()


CHANGES = 10
WITHIN = 0.5
"""A guard, not the target: the target (every edge within 100 ms) is a figure this test
prints (`-s`), since a timed assertion at 100 ms fails on a loaded test machine; a change
that waited on a poll or a timer (seconds) fails it."""


def routing_version(client: httpx.Client) -> float:
    """The edge's routing table version: its /metrics gives the lowest of its workers'."""
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name == "callmesh_edge_routing_version":
            return float(value)
    raise AssertionError("no callmesh_edge_routing_version in /metrics")


def test_a_peers_change_reaches_every_worker_of_two_edges_at_once(
    edges: tuple[Edge, Edge],
) -> None:
    """Ten changes of one peer (trust and group turned each time), after one untimed (the
    edges' first change: warm-up); each timed from the API's answer until every worker of
    both edges routes with its version (each edge's /metrics, polled: its lowest worker's).
    The median is printed and must be within 0.5 s, every change within 2 s: on a test
    machine loaded by other work a change's time is mostly the wait for a core (two cores at
    load 4-8: medians 29-100 ms, the slowest change 63-150 ms; one run in seven, at load 8, had
    a median near 155 ms). A 0.6 s sleep planted in the table's event handler fails it."""
    first, second = edges
    delays: list[float] = []
    with first.http(first.routing_port) as api, first.http() as a, second.http() as b:
        for n in range(CHANGES + 1):
            body = {"addresses": [f"{LOOPBACK}/32"], "trusted": n % 2 == 0, "group": str(n % 2)}
            reply = api.put("/v1/peers/pbx", json=body)
            answered = time.monotonic()
            reply.raise_for_status()
            version, waiting = reply.json()["version"], [a, b]
            while waiting and time.monotonic() - answered < 5:
                waiting = [edge for edge in waiting if routing_version(edge) < version]
            assert not waiting, f"change {n} did not reach every edge in 5 s"
            if n:
                delays.append(time.monotonic() - answered)
            time.sleep(0.05)
    print(f"peer change on every worker of two edges: median {statistics.median(delays):.3f} s")
    assert statistics.median(delays) <= WITHIN, delays
    assert max(delays) <= 2.0, delays
