"""The wire bench's set-ups: where each edge sends HEP, and the stalled collector's end."""

from __future__ import annotations

import socket

import pytest

from bench.capture_wire import SETUPS, Collector, edge_of
from bench.proxy.routing import LOOPBACK


@pytest.fixture
def collector() -> Collector:
    return Collector()


def test_each_setup_names_its_destination(collector: Collector) -> None:
    try:
        destinations = {s: edge_of(s, collector).env["CALLMESH_HEP_DESTINATIONS"] for s in SETUPS}
    finally:
        collector.close()
    assert destinations["off"] == ""
    assert destinations["udp"] == f"udp:{LOOPBACK}:{collector.port}"
    assert destinations["tcp"] == f"tcp:{LOOPBACK}:{collector.tcp_port}"
    assert destinations["slow"] == f"tcp:{LOOPBACK}:{collector.stalled_port}"
    assert destinations["down"].startswith(f"udp:{LOOPBACK}:")
    assert len(set(destinations.values())) == len(SETUPS)


def test_the_slow_collector_takes_the_connection_and_reads_nothing(collector: Collector) -> None:
    """What a sender writes to it stops being taken after the kernel's buffers: the edge's
    HEP sender meets a collector too slow for it (its bounded buffer, then `slow` drops)."""
    try:
        with socket.create_connection((LOOPBACK, collector.stalled_port), timeout=5) as client:
            client.setblocking(False)
            written = 0
            chunk = b"x" * 65536
            with pytest.raises(BlockingIOError):
                while written < 256 * 1024 * 1024:
                    written += client.send(chunk)
            assert written < 64 * 1024 * 1024  # it stalled: the kernel's buffers, no reader
    finally:
        collector.close()
