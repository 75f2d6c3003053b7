"""What handing a connection's message to another edge worker costs, per message, in CPU.

Run ``python -m bench.stream_handon [--messages N] [--repeat N]`` (or
``python -m bench stream_handon``). A phone's connection (TCP here; TLS and WS
are handed on the same way, after their own decryption or framing) belongs to
the worker that accepted it, yet its calls are routed by the worker their
Call-ID hashes to (`services/edge/runtime/affinity.py`): what arrives on the
connection for another worker's call is handed to that worker over a Unix
socket, and what that worker sends down the connection is handed back to be
written. This measures both hand-ons with the edge's own parts, two workers'
`EdgeSockets` and `CallAffinity` on real sockets, against doing the same
without the hand-on, in the same run:

- **in**: ``--messages`` INVITEs (with SDP, 1 KB) written by a client on its
  connection to worker 1; their Call-IDs are worker 1's own (delivered where
  they arrived) or worker 0's (handed on). CPU per message delivered.
- **out**: as many 200 responses written down that connection, by worker 1
  itself or by worker 0 (handed to worker 1 to write). CPU per message
  written, the client reading them.

Both workers and the client run in this one process on one uvloop loop, so its
CPU time (user + system, `time.process_time`) is everything a message costs
the machine, both workers' shares included; the client's part is the same
with and without the hand-on, so the difference is the hand-on's cost. Medians
of ``--repeat`` runs; the yardstick row (parsing the INVITE) tells this
machine's speed in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from services.edge import metrics
from services.edge.runtime.affinity import CallAffinity, WorkerGroup
from services.edge.runtime.sockets import EdgeSockets
from shared.settings import ListenAddress
from shared.sip.message import parse_message
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


def invite(call_id: bytes) -> bytes:
    return (
        b"INVITE sip:+14075551234@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:+14075551234@192.0.2.1>\r\n"
        b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
        b"Call-ID: " + call_id + b"\r\nCSeq: 314159 INVITE\r\n"
        b"Contact: <sip:alice@192.0.2.10:5060;transport=tcp>\r\n"
        b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\nSupported: timer\r\n"
        b"User-Agent: bench\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
    )


OK = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060\r\n"
    b"To: <sip:+14075551234@192.0.2.1>;tag=a6c85cf\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: bench\r\nCSeq: 314159 INVITE\r\nContact: <sip:gw@198.51.100.7>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


BATCH = 20
"""Messages in flight at once: the workers share one loop here, so the receiving one reads only
once the sender yields, and a Unix socket holds ~90 KB-sized messages (the edge drops past it,
`callmesh_edge_handed_on_dropped_total`; its workers are processes that read meanwhile)."""


def call_id_of(group: WorkerGroup, worker: int) -> bytes:
    """A Call-ID that worker `worker` owns (the hash decides, as on the edge)."""
    n = 0
    while group.owner(call_id := f"bench-{n}@192.0.2.10".encode()) != worker:
        n += 1
    return call_id


class Pair:
    """Two edge workers' sockets, hand-ons wired as `runtime/startup.py` wires them."""

    def __init__(self) -> None:
        self.received = [0, 0]
        self.workers: list[EdgeSockets] = []
        self.source: Destination | None = None

    def _count(
        self, index: int, _data: bytes, source: Destination, _listener: Listener, _at: float | None
    ) -> None:
        self.received[index] += 1
        self.source = source

    async def start(self, directory: Path) -> None:
        for index in (0, 1):
            sockets = EdgeSockets(functools.partial(self._count, index))
            sockets.number_connections(index)
            await sockets.open([ListenAddress("tcp", "127.0.0.1", 0)], shared=False)
            group = WorkerGroup(index, 2, directory)
            sockets.affinity = CallAffinity(
                group, [], sockets.on_message, write=sockets.write_handed
            )
            await sockets.affinity.start()
            self.workers.append(sockets)

    async def close(self) -> None:
        for sockets in self.workers:
            await sockets.close()


async def until(received: list[int], index: int, goal: int) -> None:
    """Until worker `index` has received `goal` messages (60 s at most)."""
    deadline = time.monotonic() + 60
    while received[index] < goal:
        if time.monotonic() > deadline:
            dropped = metrics.HANDED_ON_DROPPED.value
            raise TimeoutError(f"the messages did not all arrive ({dropped} dropped)")
        await asyncio.sleep(0)


async def cpu_per_message(step: Callable[[], Awaitable[None]], messages: int) -> float:
    started = time.process_time()
    await step()
    return (time.process_time() - started) / messages * 1e6


async def run(messages: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-handon-") as directory:
        pair = Pair()
        await pair.start(Path(directory))
        try:
            group = WorkerGroup(0, 2, Path(directory))
            local, handed = invite(call_id_of(group, 1)), invite(call_id_of(group, 0))
            port = pair.workers[1].bound[0].listener.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(local)
            await until(pair.received, 1, 1)
            connection = pair.source
            assert connection is not None and connection.connection_id is not None

            def sending(message: bytes, index: int) -> Callable[[], Awaitable[None]]:
                async def step() -> None:
                    for start in range(0, messages, BATCH):
                        goal = pair.received[index] + min(BATCH, messages - start)
                        writer.write(message * min(BATCH, messages - start))
                        await until(pair.received, index, goal)

                return step

            def writing(index: int) -> Callable[[], Awaitable[None]]:
                async def step() -> None:
                    assert connection is not None
                    sender = pair.workers[index]
                    for start in range(0, messages, BATCH):
                        for _ in range(min(BATCH, messages - start)):
                            await sender.send_stream(OK, connection)
                        await reader.readexactly(len(OK) * min(BATCH, messages - start))

                return step

            rows: dict[str, list[float]] = {key: [] for key in ("in1", "in0", "out1", "out0")}
            parse: list[float] = []
            for _ in range(repeat):
                started = time.process_time()
                for _ in range(messages):
                    parse_message(handed)
                parse.append((time.process_time() - started) / messages * 1e6)
                rows["in1"].append(await cpu_per_message(sending(local, 1), messages))
                rows["in0"].append(await cpu_per_message(sending(handed, 0), messages))
                rows["out1"].append(await cpu_per_message(writing(1), messages))
                rows["out0"].append(await cpu_per_message(writing(0), messages))
            writer.close()
        finally:
            await pair.close()
    median = {key: statistics.median(values) for key, values in rows.items()}
    print(f"{messages:,} messages a row, median of {repeat} runs, µs CPU per message")
    print("(both workers and the client, one process, one uvloop loop)\n")
    print("| per message | where it is handled | handed to the other worker | hand-on adds |")
    print("| --- | --- | --- | --- |")
    for label, here, there in (
        ("in: an INVITE (1 KB) arriving on worker 1's connection", "in1", "in0"),
        ("out: a 200 written down worker 1's connection", "out1", "out0"),
    ):
        a, b = median[here], median[there]
        print(f"| {label} | {a:.1f} | {b:.1f} | {b - a:.1f} (x{b / a:.2f}) |")
    print(f"| yardstick: parsing that INVITE | {statistics.median(parse):.1f} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    uvloop.run(run(arguments.messages, arguments.repeat))


if __name__ == "__main__":
    main()
