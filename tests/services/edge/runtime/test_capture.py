"""What the capture keeps and mirrors: filters, sampling by call, correlation across hidden legs."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from typing import Any

from services.edge.runtime.capture import Capture
from services.edge.runtime.trace_ring import TraceRing
from services.edge.topology import new_secret
from services.edge.topology.hiding import KIND_CALL_ID
from services.edge.topology.tokens import Keyring
from shared.contracts.calls import CallEnded
from shared.contracts.edge import GatewayFailed
from shared.hep.codec import PROTOCOL_TCP, TYPE_LOG, HepPacket, decode
from shared.hep.destination import HepDestination
from shared.hep.mirror import HepMirror
from shared.hep.sender import HepSender

A, B = ("10.0.0.1", 5070), ("10.0.0.2", 5060)


def request(method: str, call_id: str) -> bytes:
    return f"{method} sip:x@h SIP/2.0\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\r\n".encode()


def response(method: str, call_id: str) -> bytes:
    return f"SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\r\n".encode()


class Collector:
    """A UDP socket on loopback and a `Capture` mirroring to it."""

    def __init__(self, keyring: Keyring | None = None, **options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        port = self.sock.getsockname()[1]
        self.sender = HepSender([HepDestination("udp", "127.0.0.1", port)])
        self.capture = Capture(HepMirror(self.sender, **options), TraceRing(10000), keyring=keyring)

    async def packets(self) -> list[HepPacket]:
        """What arrived once the sender flushed (a marker datagram says all did)."""
        self.sender.flush()
        self.sock.sendto(b"end", self.sock.getsockname())
        loop = asyncio.get_running_loop()
        got = []
        while (data := await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 5)) != b"end":
            got.append(decode(data))
        await self.sender.stop()
        self.sock.close()
        return got


async def test_skipped_methods_go_with_their_responses_and_keepalives_are_not_sip() -> None:
    hep = Collector(skip_methods=frozenset({"OPTIONS"}))
    sent = [
        request("OPTIONS", "o"),
        response("OPTIONS", "o"),
        b"\r\n\r\n",
        request("INVITE", "c"),
        response("INVITE", "c"),
    ]
    for data in sent:
        hep.capture.received(data, "udp", A, B)
    assert [p.payload for p in await hep.packets()] == sent[3:]
    ring = hep.capture.ring
    assert ring is not None and len(ring._entries) == 5  # HEP's filters: the ring keeps all
    assert [e.data for e in ring.of_call("o")] == sent[:2]


async def test_sampling_keeps_a_call_whole_or_not_at_all() -> None:
    hep = Collector(sample=0.5)
    for n in range(200):
        for method in ("INVITE", "ACK", "BYE"):
            hep.capture.sent(request(method, f"call-{n}"), "udp", A, B)
    calls = Counter(p.correlation_id for p in await hep.packets())
    assert set(calls.values()) == {3}
    assert 60 < len(calls) < 140  # about half


def test_the_correlation_id_is_the_callers_call_id_on_either_side() -> None:
    """Also in the trace ring: either leg's Call-ID finds the call."""
    keyring = Keyring.parse(f"1:{new_secret()}")
    capture = Capture(None, TraceRing(10), keyring=keyring)
    sealed = "CMH-" + keyring.seal(KIND_CALL_ID, b"inside@pbx")
    assert capture.correlation_id("plain@x") == "plain@x"
    assert capture.correlation_id("CMH-~carrier@x") == "carrier@x"  # an outside call, inside
    assert capture.correlation_id(sealed) == "inside@pbx"  # an inside call, outside
    other = "CMH-" + Keyring.parse(f"2:{new_secret()}").seal(KIND_CALL_ID, b"z")
    assert capture.correlation_id(other) == other  # not ours: its own
    capture.received(request("INVITE", sealed), "udp", A, B)
    assert capture.ring is not None
    assert capture.ring.of_call("inside@pbx")[0].call_id == sealed


async def test_each_message_leaves_as_one_hep_packet_with_where_and_when() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.setblocking(False)
        sender = HepSender([HepDestination("udp", "127.0.0.1", collector.getsockname()[1])])
        hep = HepMirror(sender, capture_id=9, password="pw")
        capture = Capture(hep, None, clock=lambda: 1_700_000_000.25)
        data = request("INVITE", "c@x")
        capture.sent(data, "tls", A, B)
        got = decode(
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(collector, 9000), 5)
        )
        assert (got.source, got.destination, got.payload) == (A, B, data)
        assert (got.seconds, got.microseconds) == (1_700_000_000, 250_000)
        assert (got.protocol, got.capture_id, got.auth_key) == (PROTOCOL_TCP, 9, "pw")
        assert got.correlation_id == "c@x"
        await sender.stop()


async def test_a_call_event_leaves_as_a_hep_log_correlated_with_its_call() -> None:
    keyring = Keyring.parse(f"1:{new_secret()}")
    hep = Collector(capture_id=9, keyring=keyring, log_events=True)
    hep.capture.local = A
    sealed = "CMH-" + keyring.seal(KIND_CALL_ID, b"inside@pbx")
    ended = CallEnded(call_id=sealed, at=1.5, edge="e1", from_tag="a", to_tag="b", status=200)
    hep.capture.log_event(ended)
    failed = GatewayFailed(
        address="sip:g", reason="status", status=503, method="INVITE", call_id="c", gateway_id="g"
    )
    hep.capture.log_event(failed)  # not a call event: not a log
    [packet] = await hep.packets()
    assert (packet.protocol_type, packet.capture_id) == (TYPE_LOG, 9)
    assert (packet.source, packet.destination) == (A, A)
    assert packet.correlation_id == "inside@pbx"  # the hidden leg's event, with its call
    fields = json.loads(packet.payload)
    assert fields["event"] == "edge.call.ended"
    assert (fields["call_id"], fields["status"], fields["edge"]) == (sealed, 200, "e1")
