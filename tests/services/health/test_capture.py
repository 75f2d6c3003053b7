"""The prober's OPTIONS and answers at a HEP collector on loopback, and probes without answer."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from services.health.capture import FAILED, ProbeCapture
from services.health.prober import OptionsProber
from shared.hep import metrics
from shared.hep.codec import PROTOCOL_UDP, TYPE_LOG, TYPE_SIP, HepPacket
from shared.hep.destination import HepDestination
from shared.hep.mirror import HepMirror
from shared.hep.sender import HepSender
from shared.settings import ListenAddress
from shared.sip.message import Request, parse_message
from tests.services.edge.hep_support import Collector, wait_for
from tests.services.edge.support import LOOPBACK, free_port
from tests.services.health.support import responder

TIMEOUT = 1.0
"""The probes' Timer F: a silent far end times out within it (T1 = 16 ms: a loaded machine
may answer after a retransmission, which the assertions allow)."""


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector.open()
    yield found
    found.close()


def prober_to(
    destination: HepDestination, *, skip: frozenset[str] = frozenset(), capture_id: int = 0
) -> OptionsProber:
    """A prober mirroring to ``destination``, failures as logs."""
    sender = HepSender([destination])
    hep = HepMirror(sender, capture_id=capture_id, skip_methods=skip, log_events=True)
    return OptionsProber(ListenAddress("udp", LOOPBACK, 0), TIMEOUT, capture=ProbeCapture(hep))


def of_type(packets: list[HepPacket], kind: int) -> list[HepPacket]:
    return [p for p in packets if p.protocol_type == kind]


async def test_probes_answers_and_a_probe_without_answer_reach_the_collector(
    collector: Collector,
) -> None:
    far_end = await responder(free_port(), 200)
    assert far_end._transport is not None
    far = far_end._transport.get_extra_info("sockname")[:2]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((LOOPBACK, 0))  # bound, never read: the probe times out
    nobody = silent.getsockname()
    prober = prober_to(HepDestination("udp", LOOPBACK, collector.port), capture_id=7)
    await prober.open()
    here = (prober.listener.host, prober.listener.port)
    try:
        assert (await prober.probe(f"sip:{LOOPBACK}:{far[1]}")).status == 200
        lost = await prober.probe(f"sip:{LOOPBACK}:{nobody[1]}")
        assert lost.error == "timeout"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"\x16\x03junk, not SIP", here)  # never mirrored
    finally:
        await prober.close()  # flushes what is queued
        far_end.close()
        silent.close()
    wait_for(lambda: len(of_type(collector.packets, TYPE_LOG)) == 1, "the failure's log")
    sip = of_type(collector.packets, TYPE_SIP)
    assert {p.capture_id for p in collector.packets} == {7}
    assert all(p.protocol == PROTOCOL_UDP for p in sip)
    sent = [p for p in sip if (p.source, p.destination) == (here, far)]
    got = [p for p in sip if (p.source, p.destination) == (far, here)]
    assert sent and got
    assert len({p.payload for p in sent}) == 1 and sent[0].payload.startswith(b"OPTIONS sip")
    assert all(p.payload.startswith(b"SIP/2.0 200 ") for p in got)
    options = parse_message(sent[0].payload)
    assert isinstance(options, Request)
    assert {p.correlation_id for p in sent + got} == {options.call_id}
    unanswered = [p for p in sip if p.destination == nobody]
    assert len(unanswered) >= 2  # the first OPTIONS and its retransmissions, byte for byte
    assert len({p.payload for p in unanswered}) == 1
    assert len(sip) == len(sent) + len(got) + len(unanswered)  # the junk was not mirrored
    [log] = of_type(collector.packets, TYPE_LOG)
    lost_call_id = unanswered[0].correlation_id
    assert (log.source, log.destination, log.correlation_id) == (here, here, lost_call_id)
    fields = json.loads(log.payload)
    assert fields == {
        "event": FAILED,
        "target": f"sip:{LOOPBACK}:{nobody[1]}",
        "call_id": lost_call_id,
        "error": "timeout",
    }


async def test_with_options_skipped_a_failure_still_shows_as_a_log(collector: Collector) -> None:
    refused = free_port()  # TCP: nobody listens, the connection is refused
    destination = HepDestination("udp", LOOPBACK, collector.port)
    prober = prober_to(destination, skip=frozenset({"OPTIONS"}))
    await prober.open()
    try:
        outcome = await prober.probe(f"sip:{LOOPBACK}:{refused};transport=tcp")
        assert outcome.error is not None and outcome.error.startswith("transport")
    finally:
        await prober.close()
    wait_for(lambda: len(collector.packets) == 1, "the failure's log")
    [log] = collector.packets
    assert log.protocol_type == TYPE_LOG
    assert json.loads(log.payload)["error"] == outcome.error


async def test_a_down_collector_never_holds_a_probe_up() -> None:
    far_end = await responder(free_port(), 200)
    assert far_end._transport is not None
    port = far_end._transport.get_extra_info("sockname")[1]
    down = free_port()  # TCP collector nobody listens on
    prober = prober_to(HepDestination("tcp", LOOPBACK, down))
    before = metrics.DROPPED.get("down", 0)
    await prober.open()
    try:
        for _ in range(3):
            assert (await prober.probe(f"sip:{LOOPBACK}:{port}")).status == 200
    finally:
        await prober.close()
        far_end.close()
    assert metrics.DROPPED.get("down", 0) - before >= 6  # three OPTIONS, three 200s (at least)
