"""How many idle TLS connections an edge holds per GiB of its memory.

Run ``python -m bench.tls_idle [--connections N] [--concurrency N]`` (or
``python -m bench tls_idle``). The edge runs as in production
(``python -m services.edge``, one worker, against Redis and RabbitMQ, in the
benchmark's own namespace) with a ``tls:`` listener on loopback and a
certificate from a throw-away CA; this process is the client (a phone fleet
that registered and went quiet: each connection completes a full TLS 1.3
handshake, sends one OPTIONS answered 200, and then sends nothing).

Measured: the edge's resident memory (VmRSS summed over its process tree, from
/proc) once it is ready and has served a warm-up batch of connections (opened,
used, closed), then with ``--connections`` idle connections open. Printed: the
memory each idle connection adds, and the connections one GiB (2^30 bytes) of
the edge's memory holds at that cost. The kernel's socket memory is not in it
(an idle connection's buffers are empty). The connections stay silent for
``QUIET`` seconds; then every connection sends one more OPTIONS, and the count
answered 200 is printed: the connections were held, not dropped. The edge's
connection caps and idle time are raised for the run; ``ulimit -n`` is raised
to its hard limit here (the edge inherits it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from bench.proxy.callmesh import REPO
from bench.proxy.cpu import process_tree
from deploy.labs.certificates import CertAuthority
from deploy.labs.namespaces import RABBITMQ_URL, REDIS_URL, remove_namespace
from deploy.labs.ports import free_port

LOOPBACK = "127.0.0.1"
WARM_UP = 200
"""Connections opened, used and closed before the baseline (code and caches loaded)."""
READY_TIMEOUT = 60.0
QUIET = 12.0
"""Seconds every connection stays silent before the figures: past the edge's
``CALLMESH_TCP_MESSAGE_TIMEOUT`` (10 s), so only connections it keeps are counted."""
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def tree_rss_bytes(root: int) -> int:
    """VmRSS summed over `root` and its descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def options(port: int, index: int, sent: int) -> bytes:
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {LOOPBACK}:5099;branch=z9hG4bKidle{index}x{sent};rport\r\n"
        f"From: <sip:idle@{LOOPBACK}>;tag={index}\r\nTo: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: idle-{index}@{LOOPBACK}\r\nCSeq: {sent} OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def ask(connection: Connection, port: int, index: int, sent: int = 1) -> bool:
    """OPTIONS number `sent` on connection `index`: whether the edge answered 200."""
    reader, writer = connection
    writer.write(options(port, index, sent))
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return False
    return head.startswith(b"SIP/2.0 200 ")


async def open_many(
    port: int, context: ssl.SSLContext, count: int, concurrency: int
) -> list[Connection]:
    """`count` connections, each answered one OPTIONS (as a phone registers, then goes quiet)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Connection:
        async with gate:
            connection = await asyncio.open_connection(
                LOOPBACK, port, ssl=context, server_hostname=LOOPBACK, ssl_handshake_timeout=60
            )
            if not await ask(connection, port, index):
                raise OSError("the edge did not answer a new connection's OPTIONS")
            return connection

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()
    await asyncio.sleep(0.5)


async def wait_ready(port: int, context: ssl.SSLContext, edge: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            [connection] = await open_many(port, context, 1, 1)
        except OSError:
            if edge.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the edge did not start (see its log)") from None
            await asyncio.sleep(0.2)
            continue
        await close_all([connection])
        return


async def measure(
    settings: argparse.Namespace, ca: Path, edge: subprocess.Popen[bytes], port: int
) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    context.options |= ssl.OP_NO_TICKET  # every handshake a full one
    await wait_ready(port, context, edge)
    await close_all(await open_many(port, context, WARM_UP, settings.concurrency))
    await asyncio.sleep(1)
    before = tree_rss_bytes(edge.pid)

    started = time.perf_counter()
    idle = await open_many(port, context, settings.connections, settings.concurrency)
    opened = time.perf_counter() - started
    await asyncio.sleep(QUIET)
    after = tree_rss_bytes(edge.pid)
    answered = await asyncio.gather(*(ask(c, port, i, 2) for i, c in enumerate(idle)))
    await close_all(idle)

    per_connection = (after - before) / settings.connections
    print(
        f"{settings.connections} idle TLS connections to one edge worker "
        f"(TLS 1.3, ECDSA P-256, {settings.concurrency} handshakes at a time)"
    )
    print(f"{'figure':<44}{'value':>12}")
    print(f"{'seconds to open them':<44}{opened:>12.1f}")
    print(f"{'edge RSS MiB before':<44}{before / 2**20:>12.1f}")
    print(f"{'edge RSS MiB with them open':<44}{after / 2**20:>12.1f}")
    print(f"{'KiB per idle connection':<44}{per_connection / 1024:>12.1f}")
    print(f"{'idle connections per GiB':<44}{2**30 / per_connection:>12.0f}")
    print(f"{'held: answered 200 afterwards':<44}{sum(answered):>12}")


def edge_env(namespace: str, cert: Path, key: Path, port: int, connections: int) -> dict[str, str]:
    return dict(
        os.environ,
        CALLMESH_NAMESPACE=namespace,
        CALLMESH_REDIS_URL=REDIS_URL,
        CALLMESH_RABBITMQ_URL=RABBITMQ_URL,
        CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{port},tls:{LOOPBACK}:{port}",
        CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{free_port()}",
        CALLMESH_EDGE_WORKERS="1",
        CALLMESH_TLS_CERT=str(cert),
        CALLMESH_TLS_KEY=str(key),
        CALLMESH_TLS_MAX_CONNECTIONS=str(connections + WARM_UP + 100),
        CALLMESH_TCP_MAX_CONNECTIONS_PER_SOURCE="0",
        CALLMESH_TLS_IDLE_TIMEOUT="3600",
        CALLMESH_TLS_HANDSHAKE_TIMEOUT="60",
        CALLMESH_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="1,000 connections")
    settings = parser.parse_args()
    if settings.quick:
        settings.connections = 1000
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = settings.connections + WARM_UP + 1000
    if hard < needed:
        raise SystemExit(f"ulimit -n: the hard limit {hard} is under the {needed} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as folder:
        ca = CertAuthority(Path(folder))
        issued = ca.issue("edge")
        port = free_port()
        namespace = f"bench-tls-idle-{uuid.uuid4().hex[:8]}"
        env = edge_env(namespace, issued.cert, issued.key, port, settings.connections)
        log = Path(folder) / "edge.log"
        with (
            open(log, "wb") as output,
            subprocess.Popen(
                [sys.executable, "-m", "services.edge"], env=env, stdout=output, stderr=output
            ) as edge,
        ):
            try:
                uvloop.run(measure(settings, ca.cert, edge, port))
            except BaseException:
                sys.stderr.write(log.read_text(errors="replace")[-3000:])
                raise
            finally:
                edge.terminate()
                edge.wait(30)
                remove_namespace(namespace)


if __name__ == "__main__":
    main()
