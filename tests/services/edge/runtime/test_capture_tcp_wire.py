"""HEP over TCP to a real collector (a TCP server in the test), with the call events as HEP logs.

An edge mirrors to ``tcp:127.0.0.1:PORT`` with ``CALLMESH_HEP_LOG_EVENTS=true``;
SIPp calls go through it (``CALLMESH_TEST_HEP_CALLS``, default 3).  The
collector cuts the stream into packets by their length and decodes each: one
SIP packet per message SIPp logged, every call's Call-ID among them, and for
every call its started/answered/ended events as log packets (protocol type
100, JSON) under its Call-ID as correlation id.  Then the collector goes away
(calls go on, drops are counted) and comes back on the same port: the edge
reconnects and mirrors again.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from shared.hep.codec import PROTOCOL_UDP, TYPE_LOG, TYPE_SIP, HepPacket
from tests.services.edge.hep_support import TcpCollector, call_ids, count_messages, wait_for
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    Sipp,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = int(os.environ.get("CALLMESH_TEST_HEP_CALLS", "3"))
CAPTURE_ID = 7
EVENTS = ("edge.call.started", "edge.call.answered", "edge.call.ended")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-capture-tcp")


@pytest.fixture(scope="module")
def collector() -> Iterator[TcpCollector]:
    collector = TcpCollector.open()
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture(scope="module")
def edge(workdir: Path, collector: TcpCollector) -> Iterator[Edge]:
    with running_edge(
        workdir,
        hep_destinations=f"tcp:{LOOPBACK}:{collector.port}",
        hep_capture_id=str(CAPTURE_ID),
        hep_log_events="true",
    ) as running:
        with running.http(running.routing_port) as client:
            client.put("/v1/gateways/a", json={"address": "sip:127.0.0.1:9"}).raise_for_status()
            reply = client.put("/v1/rules/all", json={"prefix": "1", "gateways": ["a"]})
            reply.raise_for_status()
        running.wait_routed(reply.json()["version"])
        yield running


def calls_through(edge: Edge, workdir: Path, calls: int) -> list[Sipp]:
    """`calls` answered calls through the edge to a new SIPp gateway: [gateway, caller]."""
    port = free_port()
    with edge.http(edge.routing_port) as client:
        reply = client.put("/v1/gateways/a", json={"address": f"sip:{LOOPBACK}:{port}"})
        reply.raise_for_status()
    edge.wait_routed(reply.json()["version"])
    gateway = sipp(workdir, "gateway", port, calls=calls)
    wait_bound(port)
    caller = sipp(
        workdir, "caller", free_port(), remote=edge.sip_port, calls=calls,
        args=("-s", "16015550001"),
    )  # fmt: skip # SIPp's addresses together
    assert caller.wait(60 + calls) == 0, caller.errors() + edge.log()
    assert gateway.wait(60) == 0, gateway.errors()
    return [gateway, caller]


def of_type(packets: list[HepPacket], kind: int, call_ids: list[str]) -> list[HepPacket]:
    return [p for p in packets if p.protocol_type == kind and p.correlation_id in call_ids]


def test_every_message_and_call_event_reaches_a_tcp_collector(
    edge: Edge, collector: TcpCollector, workdir: Path
) -> None:
    gateway, caller = calls_through(edge, workdir, CALLS)
    ids = call_ids(caller)
    assert len(ids) == CALLS
    expected = count_messages(gateway) + count_messages(caller)
    assert expected >= 12 * CALLS  # positive control: SIPp logged the calls
    wanted = {(call_id, event) for call_id in ids for event in EVENTS}

    def events() -> set[tuple[str, str]]:
        logs = of_type(collector.packets, TYPE_LOG, ids)
        return {(p.correlation_id, json.loads(p.payload)["event"]) for p in logs}

    wait_for(lambda: len(of_type(collector.packets, TYPE_SIP, ids)) >= expected, "SIP packets")
    wait_for(lambda: wanted <= events(), "the calls' events as HEP logs")
    sip = of_type(collector.packets, TYPE_SIP, ids)
    assert collector.malformed == []
    assert len(sip) == expected
    assert Counter(p.correlation_id for p in sip) == Counter(
        {call_id: expected // CALLS for call_id in ids}
    )
    assert {(p.protocol, p.capture_id) for p in sip} == {(PROTOCOL_UDP, CAPTURE_ID)}
    for log in of_type(collector.packets, TYPE_LOG, ids):
        fields = json.loads(log.payload)
        assert fields["call_id"] == log.correlation_id and fields["edge"]
        assert log.capture_id == CAPTURE_ID
        assert log.source == log.destination == (LOOPBACK, edge.sip_port)


def test_a_tcp_collector_gone_and_back_costs_packets_not_calls(
    edge: Edge, collector: TcpCollector, workdir: Path
) -> None:
    collector.close()
    calls_through(edge, workdir, 1)  # the collector is away: the call completes all the same
    with edge.http() as client:
        text = client.get("/metrics").text
    dropped = re.search(r'^callmesh_hep_dropped_total\{reason="down"\} (\S+)$', text, re.M)
    assert dropped is not None and float(dropped.group(1)) >= 1, text[-2000:]
    assert edge.log().count("collector down; dropping") == 1
    connections = collector.connections
    collector.listen()  # back on the same port
    deadline = time.monotonic() + 30
    while True:  # the edge reconnects on its next packet, at most every 2 s: calls until one
        gateway, caller = calls_through(edge, workdir, 1)
        ids = call_ids(caller)
        expected = count_messages(gateway) + count_messages(caller)
        time.sleep(0.5)
        if len(of_type(collector.packets, TYPE_SIP, ids)) == expected:
            break
        assert time.monotonic() < deadline, "the edge never mirrored a whole call again"
        time.sleep(1)
    assert collector.connections > connections
