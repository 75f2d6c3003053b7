from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from services.edge.runtime.affinity import CallAffinity, WorkerGroup, connection_owner
from services.edge.runtime.capture import Capture
from services.edge.runtime.sockets import EdgeSockets, top_via_names_port
from services.edge.runtime.trace_ring import TraceRing
from shared.hep.codec import PROTOCOL_TCP, decode
from shared.hep.destination import HepDestination
from shared.hep.mirror import HepMirror
from shared.hep.sender import HepSender
from shared.settings import ListenAddress
from shared.settings_formats import Transport
from shared.sip.transport.base import BindError, Listener
from shared.sip.transport.destination import Destination
from shared.sip.transport.tls_context import TlsFiles
from tests.shared.bus.support import until
from tests.shared.sip.transport.test_udp import hold_the_loop
from tests.shared.sip.transport.ws_client import WsClient

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:40001;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKb\r\n"
    b"Call-ID: x\r\n\r\n"
)


def test_the_top_via_names_a_port_or_not() -> None:
    assert top_via_names_port(RESPONSE, 40001)
    assert not top_via_names_port(RESPONSE, 5060)  # the second Via does not count
    assert top_via_names_port(RESPONSE.replace(b";branch=z9hG4bKa", b""), 40001)
    assert top_via_names_port(RESPONSE.replace(b"\nVia:", b"\nv:"), 40001)


@pytest.mark.parametrize(
    ("via_lines", "ours"),
    [
        (b"Via: SIP/2.0/UDP 10.0.0.1:40001\r\n", True),  # the port ends the value
        (b"Via: SIP/2.0/UDP 10.0.0.1:40001 \t\r\n", True),  # and space after it
        (b"Via: SIP/2.0/UDP 10.0.0.1:40001\x0b\x0c\r\n", True),  # any `bytes.strip` strips
        (b"Via: SIP/2.0/UDP 10.0.0.1:40001\x0c, SIP/2.0/UDP 10.0.0.2:5060\r\n", True),
        (b"Via: SIP/2.0/UDP 10.0.0.1:400011;branch=z9hG4bKa\r\n", False),  # a longer port
        (b"Via: SIP/2.0/UDP 10.0.0.1:4000;branch=z9hG4bKa\r\n", False),  # a shorter one
        (b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK:40001;\r\n", True),  # as peeked
        (b"Via: SIP/2.0/UDP 10.0.0.1:5060, SIP/2.0/UDP 10.0.0.2:40001\r\n", False),
        (b"Via: SIP/2.0/UDP 10.0.0.2:40001 , SIP/2.0/UDP 10.0.0.1:5060\r\n", True),
        (b"Via: SIP/2.0/UDP 10.0.0.1:5060\r\nVia: SIP/2.0/UDP 10.0.0.2:40001\r\n", False),
        (b"VIA: SIP/2.0/UDP 10.0.0.1:40001\r\n", True),  # read by the parser's name rules
        (b"Via : SIP/2.0/UDP 10.0.0.1:5060\r\n", False),
        (b"Call-ID: x\r\nv: SIP/2.0/UDP 10.0.0.1:40001\r\n", True),  # not the second line
        (b"Call-ID: x\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nv: SIP/2.0/UDP h:40001\r\n", False),
    ],
)
def test_the_top_via_is_read_in_any_layout(via_lines: bytes, ours: bool) -> None:
    response = b"SIP/2.0 180 Ringing\r\n" + via_lines + b"CSeq: 1 INVITE\r\n\r\n"
    assert top_via_names_port(response, 40001) is ours
    assert top_via_names_port(response.replace(b"\r\n", b"\n"), 40001) is ours  # bare LF


def test_a_via_last_in_a_message_cut_short_is_read() -> None:
    assert top_via_names_port(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:40001", 40001)
    assert not top_via_names_port(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060", 40001)


def test_an_unreadable_via_counts_as_ours() -> None:
    assert top_via_names_port(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", 40001)


async def test_a_port_in_use_is_named_in_the_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        sockets = EdgeSockets(lambda *_: None)
        with pytest.raises(BindError) as caught:
            await sockets.open([ListenAddress("udp", "127.0.0.1", port)], shared=True)
    assert str(caught.value) == f"udp:127.0.0.1:{port}: address already in use"


def test_the_process_stops_with_one_line_naming_the_socket(tmp_path: Path) -> None:
    """It once said `[Errno 98] Address already in use`, not which socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(
            os.environ,
            CALLMESH_SIP_LISTEN=f"tcp:127.0.0.1:{port}",
            CALLMESH_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
            CALLMESH_DATA_DIR=str(tmp_path),
        )
        env.pop("CALLMESH_RABBITMQ_URL", None)
        env.pop("CALLMESH_REDIS_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "services"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    errors = [json.loads(line) for line in done.stdout.splitlines() if '"error"' in line]
    assert [(e["msg"], e["error"]) for e in errors] == [
        ("cannot start", f"tcp:127.0.0.1:{port}: address already in use")
    ]
    assert "Traceback" not in done.stdout + done.stderr


def _invite(call_id: bytes) -> bytes:
    return (
        b"INVITE sip:bob@192.0.2.9 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKst\r\n"
        b"From: <sip:alice@192.0.2.1>;tag=1\r\nTo: <sip:bob@192.0.2.9>\r\n"
        b"Call-ID: " + call_id + b"\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def _owned_by(group: WorkerGroup, worker: int, prefix: str) -> bytes:
    return next(
        call_id
        for n in range(1000)
        if group.owner(call_id := f"{prefix}{n}@192.0.2.1".encode()) == worker
    )


def _keep(
    into: list[tuple[bytes, Destination]],
    data: bytes,
    source: Destination,
    _listener: Listener,
    _at: float | None,
) -> None:
    into.append((data, source))


async def test_a_connection_is_used_by_whichever_worker_routes_its_call(tmp_path: Path) -> None:
    """Two workers on real sockets: a message on worker 1's connection reaches the worker
    owning its Call-ID (0), what 0 sends down that connection is written by 1, and a
    keepalive's answer stays with 1 (it pings the flows it holds)."""
    received: dict[int, list[tuple[bytes, Destination]]] = {0: [], 1: []}
    workers: list[EdgeSockets] = []
    for index in (0, 1):
        sockets = EdgeSockets(functools.partial(_keep, received[index]))
        sockets.number_connections(index)
        await sockets.open([ListenAddress("tcp", "127.0.0.1", 0)], shared=False)
        group = WorkerGroup(index, 2, tmp_path)
        sockets.affinity = CallAffinity(group, [], sockets.on_message, write=sockets.write_handed)
        await sockets.affinity.start()
        workers.append(sockets)
    call_id = _owned_by(group, 0, "call-")
    ping_id = _owned_by(group, 0, "cm-ka-")
    port = workers[1].bound[0].listener.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_invite(call_id))
        await until(lambda: len(received[0]) == 1)
        data, source = received[0][0]
        assert data == _invite(call_id) and source.connection_id is not None
        assert connection_owner(source.connection_id) == 1  # the id names the holder
        await workers[0].send_stream(b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n", source)
        assert (
            await reader.readuntil(b"\r\n\r\n")
            == b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n"
        )
        answer = b"SIP/2.0 200 OK\r\nCall-ID: " + ping_id + b"\r\nContent-Length: 0\r\n\r\n"
        writer.write(answer)
        await until(lambda: len(received[1]) == 1)
        assert received[1][0][0] == answer and len(received[0]) == 1
    finally:
        writer.close()
        for sockets in workers:
            await sockets.close()


@pytest.mark.parametrize("transport", ["tcp", "tls", "ws", "wss"])
async def test_every_stream_transport_is_captured_with_its_connections_ports(
    transport: Transport, tmp_path: Path
) -> None:
    """What comes and leaves on a connection of each stream transport reaches the trace ring
    and HEP (IP protocol 6) as SIP, with the connection's own addresses and ports."""
    ca = CertAuthority(tmp_path / "ca")
    issued = ca.issue("edge")
    files = TlsFiles(str(issued.cert), str(issued.key), str(ca.cert), handshake_timeout=2)
    received: list[tuple[bytes, Destination]] = []
    sockets = EdgeSockets(functools.partial(_keep, received), tls=files)
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.setblocking(False)
    sender = HepSender([HepDestination("udp", "127.0.0.1", collector.getsockname()[1])])
    sockets.capture = Capture(HepMirror(sender), TraceRing(100))
    secure = transport in ("tls", "wss")
    context = ssl.create_default_context(cafile=str(ca.cert)) if secure else None
    invite, trying = _invite(b"cap@x"), b"SIP/2.0 100 Trying\r\nCall-ID: cap@x\r\n\r\n"
    try:
        await sockets.open([ListenAddress(transport, "127.0.0.1", 0)], shared=False)
        port = sockets.bound[0].listener.port
        if transport.startswith("ws"):
            client = await WsClient.connect(port, context=context)
            client.send(invite)
            writer = client.writer
        else:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if secure else None
            )
            writer.write(invite)
        here = writer.get_extra_info("sockname")[:2]
        await until(lambda: len(received) == 1)
        await sockets.send_stream(trying, received[0][1])
        if transport.startswith("ws"):
            assert await client.receive() == trying
        else:
            assert await reader.readuntil(b"\r\n\r\n") == trying
        edge = ("127.0.0.1", port)
        ring = sockets.capture.ring
        assert ring is not None
        seen = [
            (e.direction, e.transport, e.source, e.destination, e.data)
            for e in ring.of_call("cap@x")
        ]
        assert seen == [
            ("in", transport, here, edge, invite),
            ("out", transport, edge, here, trying),
        ]
        sender.flush()
        loop = asyncio.get_running_loop()
        packets = [
            decode(await asyncio.wait_for(loop.sock_recv(collector, 65535), 5)) for _ in seen
        ]
        assert [(p.protocol, p.source, p.destination, p.payload) for p in packets] == [
            (PROTOCOL_TCP, here, edge, invite),
            (PROTOCOL_TCP, edge, here, trying),
        ]
        writer.close()
    finally:
        await sender.stop()
        collector.close()
        await sockets.close()


async def test_the_standing_wait_is_the_longest_of_each_sockets_shortest() -> None:
    """A queue standing in one socket is the worker behind, whatever its other sockets hold:
    one datagram that waited in one socket while the loop was held, one read at once in the
    other, and the standing wait is the first's."""
    received: list[bytes] = []
    sockets = EdgeSockets(lambda data, *_: received.append(data))
    ports = [free_port(), free_port()]
    await sockets.open([ListenAddress("udp", "127.0.0.1", port) for port in ports], shared=True)
    try:
        assert sockets.take_standing_wait() == 0.0  # nothing read: no queue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"OPTIONS", ("127.0.0.1", ports[0]))
            hold_the_loop(0.3)
            client.sendto(b"OPTIONS", ("127.0.0.1", ports[1]))
            await until(lambda: len(received) == 2)
        assert sockets.take_standing_wait() >= 0.25
        assert sockets.take_standing_wait() == 0.0
    finally:
        await sockets.close()
