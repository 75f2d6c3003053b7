"""What SIP over TLS costs a Callmesh process: handshakes per second, and CPU per call beside UDP.

Run ``python -m bench.tls [--handshakes N] [--calls N] [--concurrency N]`` (or
``python -m bench tls``). A server process (this module with ``--serve``: the
transport hub on uvloop, as the edge runs it, with the TLS adapter of
``shared/sip/transport/tls.py``) answers every message it receives with a 200 on
the same path; this process is the client.

- **Handshakes**: ``--handshakes`` TLS connections (``--concurrency`` at a time)
  are opened, each completing a full handshake (TLS 1.3, ECDSA P-256 certificate
  from a throw-away CA, no session resumption) and sending one OPTIONS answered
  200, then closed. Printed: handshakes/s (bound by this client on a small
  machine), the server's CPU per handshake, and the handshakes per second one
  server core could take at that cost.
- **Calls**: ``--calls`` calls' worth of messages, a call being the seven
  messages a proxy receives for one (INVITE, 100, 180, 200, ACK, BYE, 200),
  each answered, over UDP and then over TLS connections opened beforehand
  (``--concurrency`` of them, so the handshakes are not counted). Printed: the
  server's CPU per call over each transport and their ratio: what TLS adds to a
  call's transport work, not the whole proxy's (that is ``bench proxy``).

The server's CPU is its process's user + system time from /proc before and
after each step; the client's is not counted. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.proxy.cpu import tree_cpu_seconds
from shared.settings import ListenAddress
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from shared.sip.transport.hub import Transports
from shared.sip.transport.tls_context import TlsFiles

MESSAGE = (
    b"OPTIONS sip:bench@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKbench;rport\r\n"
    b"From: <sip:bench@127.0.0.1>;tag=1\r\nTo: <sip:bench@127.0.0.1>\r\n"
    b"Call-ID: bench@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
ANSWER = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
MESSAGES_PER_CALL = 7


# ---- the server process ---------------------------------------------------------------


async def serve(cert: str, key: str) -> None:
    """Answer every message; print the bound ports, then run until stdin closes."""
    transports: Transports | None = None

    def answer(_data: bytes, source: Destination, _listener: Listener) -> None:
        if source.transport == "udp":
            assert transports is not None
            asyncio.get_running_loop().create_task(transports.send(ANSWER, source))
        else:  # a stream: write on its connection straight away
            assert transports is not None
            connection = transports.tls.connection(source)
            if connection is not None:
                connection.write(ANSWER)

    addresses = [ListenAddress("udp", "127.0.0.1", 0), ListenAddress("tls", "127.0.0.1", 0)]
    files = TlsFiles(cert, key, handshake_timeout=10.0)
    transports = await Transports.open(addresses, answer, tls=files)
    print(" ".join(str(listener.port) for listener in transports.listeners), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await transports.close()


# ---- the client ---------------------------------------------------------------------


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.answers.put_nowait(data)


async def read_answer(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def handshakes(port: int, context: ssl.SSLContext, count: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
            )
            writer.write(MESSAGE)
            await read_answer(reader)
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


async def tls_calls(port: int, context: ssl.SSLContext, calls: int, concurrency: int) -> None:
    streams = [
        await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
        for _ in range(concurrency)
    ]

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, share: int) -> None:
        for _ in range(share * MESSAGES_PER_CALL):
            writer.write(MESSAGE)
            await read_answer(reader)
        writer.close()

    shares = [calls // concurrency + (i < calls % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(run(r, w, n) for (r, w), n in zip(streams, shares, strict=True)))


async def udp_calls(port: int, calls: int, concurrency: int) -> None:
    loop = asyncio.get_running_loop()

    async def run(share: int) -> None:
        transport, client = await loop.create_datagram_endpoint(
            UdpClient, remote_addr=("127.0.0.1", port)
        )
        for _ in range(share * MESSAGES_PER_CALL):
            transport.sendto(MESSAGE)
            await asyncio.wait_for(client.answers.get(), 5)
        transport.close()

    shares = [calls // concurrency + (i < calls % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(run(n) for n in shares))


async def measure(options: argparse.Namespace, ca: Path, server: int, ports: list[int]) -> None:
    udp_port, tls_port = ports
    context = ssl.create_default_context(cafile=str(ca))
    context.options |= ssl.OP_NO_TICKET  # every handshake a full one

    before = tree_cpu_seconds(server)
    elapsed = await handshakes(tls_port, context, options.handshakes, options.concurrency)
    per_handshake = (tree_cpu_seconds(server) - before) / options.handshakes
    print(f"{options.handshakes} TLS handshakes, {options.concurrency} at a time")
    print(f"{'figure':<36}{'value':>12}")
    print(f"{'handshakes/s':<36}{options.handshakes / elapsed:>12.0f}")
    print(f"{'server CPU µs/handshake':<36}{per_handshake * 1e6:>12.0f}")
    print(f"{'handshakes/s a server core can take':<36}{1 / per_handshake:>12.0f}")

    cpu: dict[str, float] = {}
    for name, calls in (
        ("udp", udp_calls(udp_port, options.calls, options.concurrency)),
        ("tls", tls_calls(tls_port, context, options.calls, options.concurrency)),
    ):
        before = tree_cpu_seconds(server)
        await calls
        cpu[name] = (tree_cpu_seconds(server) - before) / options.calls
    print()
    print(f"{options.calls} calls ({MESSAGES_PER_CALL} messages each, each answered)")
    print(f"{'figure':<36}{'value':>12}")
    print(f"{'server CPU µs/call over UDP':<36}{cpu['udp'] * 1e6:>12.0f}")
    print(f"{'server CPU µs/call over TLS':<36}{cpu['tls'] * 1e6:>12.0f}")
    print(f"{'TLS / UDP':<36}{cpu['tls'] / cpu['udp']:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="200 handshakes, 500 calls")
    parser.add_argument("--serve", nargs=2, metavar=("CERT", "KEY"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        uvloop.run(serve(*options.serve))
        return
    if options.quick:
        options.handshakes, options.calls = 200, 500
    from deploy.labs.certificates import CertAuthority  # the tests' CA maker

    with tempfile.TemporaryDirectory() as folder:
        ca = CertAuthority(Path(folder))
        issued = ca.issue("server")
        argv = [sys.executable, "-m", "bench.tls", "--serve", str(issued.cert), str(issued.key)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        with subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        ) as server:
            assert server.stdout is not None and server.stdin is not None
            ports = [int(port) for port in server.stdout.readline().split()]
            try:
                uvloop.run(measure(options, ca.cert, server.pid, ports))
            finally:
                server.stdin.close()
                server.wait(30)


if __name__ == "__main__":
    main()
