"""HEP capture of real calls: what a collector on loopback decodes against what was on the wire.

N SIPp calls per kind (answered, failed over from a 503, to a topology-hidden
gateway; ``CALLMESH_TEST_HEP_CALLS``, default 3, the issue's figure is 100)
through one edge mirroring to a UDP collector in the test, while tshark
captures the loopback.  Every SIP datagram to or from the edge's port has its
HEP packet (same addresses, ports and bytes, timestamp within a second of the
capture's), their count is what the SIPp instances logged, and sngrep's HEP
decoder reads the same packets back into SIP that tshark dissects alike.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.labs.ports import free_port
from services.edge.topology import new_secret
from services.edge.topology.hiding import KIND_CALL_ID
from services.edge.topology.tokens import Keyring
from shared.hep.codec import PROTOCOL_TCP, PROTOCOL_UDP, TYPE_SIP, HepPacket
from tests.services.edge.hep_support import (
    MARKER,
    Collector,
    LoopbackCapture,
    call_ids,
    count_messages,
    sngrep_decapsulate,
    tshark_fields,
    tshark_filter,
)
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    Sipp,
    refusing_scenario,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = int(os.environ.get("CALLMESH_TEST_HEP_CALLS", "3"))
KEYS = f"1:{new_secret()}"
CAPTURE_ID = 2001
PASSWORD = "s3cret"
RING = 64
"""Messages each worker keeps: the last call's, not the first's (about 12 per call)."""
_CSEQ_OPTIONS = re.compile(rb"\r\nCSeq:\s*\d+\s+OPTIONS\r\n", re.IGNORECASE)

Key = tuple[str, int, str, int, bytes]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-capture")


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector.open()
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture(scope="module")
def edge(workdir: Path, collector: Collector) -> Iterator[Edge]:
    with running_edge(
        workdir,
        hep_destinations=f"udp:{LOOPBACK}:{collector.port}",
        hep_capture_id=str(CAPTURE_ID),
        hep_password=PASSWORD,
        hep_skip_methods="OPTIONS",
        trace_ring=str(RING),
        topology_keys=KEYS,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def calls(edge: Edge, workdir: Path, collector: Collector) -> dict[str, Any]:
    """Run every kind of call under a loopback capture; what each side saw."""
    answering, refusing, hidden = free_port(), free_port(), free_port()
    with edge.http(edge.routing_port) as client:
        for gateway_id, port, extra in (
            ("a", answering, {}),
            ("r", refusing, {}),
            ("h", hidden, {"topology_hiding": {"mask_call_id": True}}),
        ):
            body = {"address": f"sip:{LOOPBACK}:{port}", **extra}
            client.put(f"/v1/gateways/{gateway_id}", json=body).raise_for_status()
        for rule_id, prefix, gateways in (
            ("answered", "1601", ["a"]),
            ("failover", "1602", ["r", "a"]),
            ("hidden", "1603", ["h"]),
        ):
            body = {"prefix": prefix, "gateways": gateways}
            version = client.put(f"/v1/rules/{rule_id}", json=body).json()["version"]
    edge.wait_routed(version)
    collector.packets.clear()
    pcap = workdir / "loopback.pcap"
    capture = LoopbackCapture.start(pcap, [edge.sip_port, collector.port])
    started: list[Sipp] = []
    callers: dict[str, Sipp] = {}
    for kind, number, gateway in (
        ("answered", "16015550001", [("gateway", answering)]),
        ("failover", "16025550001", [("refuse", refusing), ("gateway", answering)]),
        ("hidden", "16035550001", [("gateway", hidden)]),
    ):
        for scenario, port in gateway:
            path = refusing_scenario(workdir, 503, "Service Unavailable")
            started.append(
                sipp(workdir, path if scenario == "refuse" else scenario, port, calls=CALLS)
            )
            wait_bound(port)
        caller = sipp(
            workdir, "caller", free_port(), remote=edge.sip_port, calls=CALLS, args=("-s", number)
        )
        started.append(caller)
        callers[kind] = caller
        assert caller.wait(60 + CALLS) == 0, caller.errors() + edge.log()
        for gateway_sipp in started[-len(gateway) - 1 : -1]:
            assert gateway_sipp.wait(60) == 0, gateway_sipp.errors()
    sipp_count = sum(count_messages(one) for one in started)
    wait_until(lambda: len(collector.packets) >= sipp_count, "every HEP packet")
    capture.stop_after_marker(collector)
    return {"pcap": pcap, "sipp_count": sipp_count, "callers": callers}


def edge_put_gateway(edge: Edge, gateway_id: str, port: int) -> None:
    with edge.http(edge.routing_port) as client:
        reply = client.put(f"/v1/gateways/{gateway_id}", json={"address": f"sip:{LOOPBACK}:{port}"})
        reply.raise_for_status()
    edge.wait_routed(reply.json()["version"])


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def key_of(packet: HepPacket) -> Key:
    return (*packet.source, *packet.destination, packet.payload)


def wire(pcap: Path, port: int) -> list[tuple[Key, float]]:
    """Every SIP datagram to or from the edge's port, OPTIONS excepted (not mirrored)."""
    rows = tshark_fields(
        pcap,
        ["ip.src", "udp.srcport", "ip.dst", "udp.dstport", "frame.time_epoch", "udp.payload"],
        "-Y",
        f"udp.port == {port}",
    )
    found = []
    for src, sport, dst, dport, when, payload in rows:
        data = bytes.fromhex(payload.replace(":", ""))
        if not _CSEQ_OPTIONS.search(data):
            found.append(((src, int(sport), dst, int(dport), data), float(when)))
    return found


def test_every_message_on_the_wire_reaches_the_collector_whole(
    edge: Edge, collector: Collector, calls: dict[str, Any]
) -> None:
    on_wire = wire(calls["pcap"], edge.sip_port)
    packets = collector.packets
    assert len(on_wire) >= 12 * CALLS, "too little captured to compare"  # positive control
    assert collector.malformed == []
    assert len(packets) == len(on_wire) == calls["sipp_count"]
    assert Counter(key_of(p) for p in packets) == Counter(key for key, _ in on_wire)
    times: dict[Key, list[float]] = {}
    for key, when in on_wire:
        times.setdefault(key, []).append(when)
    for packet in packets:
        stamp = packet.seconds + packet.microseconds / 1e6
        assert min(abs(stamp - when) for when in times[key_of(packet)]) < 1.0
        assert packet.microseconds < 1_000_000
        assert (packet.protocol, packet.protocol_type) == (PROTOCOL_UDP, TYPE_SIP)
        assert (packet.capture_id, packet.auth_key) == (CAPTURE_ID, PASSWORD)


def call_id_of(payload: bytes) -> str:
    found = re.search(rb"\r\n(?:Call-ID|i):\s*(\S+)\r\n", payload, re.IGNORECASE)
    assert found is not None
    return found.group(1).decode()


def test_the_correlation_id_is_the_callers_call_id_on_both_legs(
    collector: Collector, calls: dict[str, Any]
) -> None:
    hidden = set(call_ids(calls["callers"]["hidden"]))
    keyring = Keyring.parse(KEYS)
    inside = [p for p in collector.packets if call_id_of(p.payload).startswith("CMH-")]
    assert len(inside) >= 4 * CALLS  # the hidden gateway's leg was captured
    for packet in collector.packets:
        call_id = call_id_of(packet.payload)
        if call_id.startswith("CMH-"):  # sealed from the caller's Call-ID (the inside's)
            caller = keyring.open(KIND_CALL_ID, call_id.removeprefix("CMH-")).decode()
            assert caller in hidden
            assert packet.correlation_id == caller
        else:
            assert packet.correlation_id == call_id


SIP_ON_ANY_PORT = ("-o", "udp.try_heuristic_first:TRUE")
"""tshark's SIP heuristic before its port table: the ports handed out (`free_port`) include
ones the table gives to other protocols (a CI run's SIPp drew 11211, memcache's, and its
packets were read as memcache, without a Call-ID)."""


def test_sngrep_decodes_the_hep_capture_into_the_same_sip_for_tshark(
    edge: Edge, collector: Collector, calls: dict[str, Any], workdir: Path
) -> None:
    hep_only = workdir / "hep.pcap"
    not_marker = f"udp.length != {8 + len(MARKER)}"
    tshark_filter(calls["pcap"], f"udp.dstport == {collector.port} && {not_marker}", hep_only)
    sip = workdir / "hep-sip.pcap"
    sngrep_decapsulate(hep_only, sip)
    rows = tshark_fields(
        sip,
        ["ip.src", "udp.srcport", "ip.dst", "udp.dstport", "frame.time_epoch", "sip.Call-ID",
         "udp.payload", "_ws.malformed", "_ws.expert.severity"],
        *SIP_ON_ANY_PORT,
    )  # fmt: skip # the fields asked of tshark together
    assert rows and len(rows) % 2 == 0
    assert rows[0::2] == rows[1::2]  # sngrep 1.6 writes each decoded packet twice
    decoded = rows[0::2]
    assert len(decoded) == len(collector.packets)
    ours = Counter(
        (*key_of(p)[:4], f"{p.seconds + p.microseconds / 1e6:.6f}", call_id_of(p.payload))
        for p in collector.packets
    )
    theirs = Counter()  # type: Counter[tuple[Any, ...]]
    for src, sport, dst, dport, when, call_id, payload, malformed, severity in decoded:
        assert malformed == "" and severity == "", (malformed, severity)
        key = (src, int(sport), dst, int(dport), f"{float(when):.6f}", call_id)
        theirs[key] += 1
        assert bytes.fromhex(payload.replace(":", "")) in {p.payload for p in collector.packets}
    assert theirs == ours


def test_the_trace_api_shows_the_last_hidden_call_on_both_legs_and_forgets_the_first(
    edge: Edge, calls: dict[str, Any]
) -> None:
    last = call_ids(calls["callers"]["hidden"])[-1]
    first = call_ids(calls["callers"]["answered"])[0]
    with edge.http() as client:
        reply = client.get(f"/v1/calls/{last}/trace")
        assert reply.status_code == 200, reply.text
        messages = reply.json()["messages"]
        legs = {m["call_id"] for m in messages}
        assert last in legs and any(leg.startswith("CMH-") for leg in legs)
        assert {m["correlation_id"] for m in messages} == {last}
        assert messages[0]["message"].startswith("INVITE sip:16035550001@")
        assert [m["time"] for m in messages] == sorted(m["time"] for m in messages)
        text = client.get(f"/v1/calls/{last}/trace", params={"format": "text"})
        assert text.status_code == 200
        assert f"-> {LOOPBACK}:{edge.sip_port}" in text.text and "INVITE sip:" in text.text
        inside = next(leg for leg in legs if leg.startswith("CMH-"))
        assert client.get(f"/v1/calls/{inside}/trace").json()["messages"] == messages
        gone = client.get(f"/v1/calls/{first}/trace")
        assert gone.status_code == 404 and "aged out" in gone.text


def test_a_call_over_tcp_is_mirrored_with_the_connections_ports(
    edge: Edge, collector: Collector, calls: dict[str, Any], workdir: Path
) -> None:
    port, caller_port = free_port(), free_port()
    edge_put_gateway(edge, "a", port)
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    before = len(collector.packets)
    caller = sipp(
        workdir, "caller", caller_port, remote=edge.sip_port, transport="t1",
        args=("-s", "16015550003"),
    )  # fmt: skip # SIPp's addresses together
    assert caller.wait(60) == 0, caller.errors() + edge.log()
    assert gateway.wait(60) == 0
    expected = before + count_messages(caller) + count_messages(gateway)
    wait_until(lambda: len(collector.packets) >= expected, "the TCP call's HEP packets")
    assert len(collector.packets) == expected
    caller_side = [
        p for p in collector.packets[before:] if caller_port in (p.source[1], p.destination[1])
    ]
    assert caller_side and {p.protocol for p in caller_side} == {PROTOCOL_TCP}
    invite = next(p for p in caller_side if p.payload.startswith(b"INVITE "))
    assert invite.source == (LOOPBACK, caller_port)
    assert invite.destination == (LOOPBACK, edge.sip_port)


def test_a_collector_that_is_down_changes_nothing_for_calls(
    edge: Edge, collector: Collector, calls: dict[str, Any], workdir: Path
) -> None:
    collector.close()  # its port now answers with ICMP port unreachable
    port = free_port()
    edge_put_gateway(edge, "a", port)
    gateway = sipp(workdir, "gateway", port, calls=CALLS)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller",
        free_port(),
        remote=edge.sip_port,
        calls=CALLS,
        args=("-s", "16015550002"),
    )
    assert caller.wait(60 + CALLS) == 0, caller.errors() + edge.log()
    assert gateway.wait(60) == 0

    def dropped_for_down() -> bool:
        # Polled: the workers' counts reach /metrics a moment after the calls end.
        with edge.http() as client:
            text = client.get("/metrics").text
        dropped = re.search(r'^callmesh_hep_dropped_total\{reason="down"\} (\S+)$', text, re.M)
        return dropped is not None and float(dropped.group(1)) >= 1

    wait_until(dropped_for_down, "packets dropped for a down collector counted")
    assert edge.log().count("collector down; dropping") == 1
