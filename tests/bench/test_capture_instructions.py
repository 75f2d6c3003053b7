"""The instructions bench's pipeline, without valgrind: it mirrors what a worker would."""

from __future__ import annotations

import socket

from bench.capture_instructions import WARM_CALLS, child
from shared.hep.codec import decode

MESSAGES_PER_CALL = 14
"""The proxy core bench's call at the edge: 7 received, 7 sent."""


async def test_every_message_of_every_call_reaches_the_collector_once() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector,
    ):
        for sock in (sink, collector):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        ports = {"sink": sink.getsockname()[1], "udp": collector.getsockname()[1]}
        await child(["udp"], 10, ports)
        packets = []
        while True:
            try:
                packets.append(decode(collector.recv(65535)))
            except BlockingIOError:
                break
        sent = 0
        while True:
            try:
                sink.recv(65535)
            except BlockingIOError:
                break
            sent += 1
    calls = WARM_CALLS + 10
    assert len(packets) == MESSAGES_PER_CALL * calls
    assert sent == MESSAGES_PER_CALL // 2 * calls  # what the proxy sent left by a real socket
    assert len({p.correlation_id for p in packets}) == calls


async def test_the_driver_alone_replays_the_proxys_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        await child(["driver"], 10, {"sink": sink.getsockname()[1]})  # no proxy: no error
