"""Several edge worker processes on the same SIP ports, so the edge uses every core.

Design: every worker (the service's own process is worker 0) binds the
listening sockets with SO_REUSEPORT, so the kernel spreads new traffic over
them, and opens a private UDP port of its own.  What has to reach the worker
holding a transaction does:

- Responses: a worker sends its requests from its private port and writes
  that port in its Via, so the responses (and their retransmissions) come
  back to it and no other.
- Requests on UDP: whichever worker the kernel's 4-tuple hash gives a request
  to hands it to the worker its Call-ID hashes to (`services.edge.runtime.affinity`),
  so the INVITE, its CANCEL and ACK, and the dialog's BYE meet one worker, and
  one sender's calls (a trunk) spread over all of them.  On TCP requests arrive
  on the connection, which belongs to the worker that accepted it.
- In-dialog requests (BYE, ACK for 2xx, re-INVITE) need no state: any worker
  could route them from their Route headers; keeping them with the INVITE's
  worker serves peers that send responses to where a call came from.

Caveat: a worker that dies and is restarted may cost the CANCEL or non-2xx
ACK of the calls it was setting up (answered 481 / retransmitted until the
transaction times out); while its socket is gone the others handle its
calls' messages themselves.  The edge reports ready only once every worker
serves.

Extra workers are child processes (`python -m services.edge.runtime.worker_main`) with
their own routing cache; they need the shared Redis and RabbitMQ (the
embedded store and in-process bus cannot be shared), so without them the
edge runs one worker and says so.  A child that dies is restarted; a child
whose parent dies (even by SIGKILL) is terminated by the kernel.  Only the
main process serves HTTP; its /metrics folds in every worker's metrics, which
each worker serves on a Unix socket in a directory private to this pool (beside
the hand-on sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.steering import create_maps
from services.edge.runtime.trace_socket import read_trace
from shared.api.metrics import MetricsSource, read_unix
from shared.background import cancel_and_wait
from shared.settings import Settings

log = logging.getLogger("callmesh.edge")

WORKER_INDEX_ENV = "CALLMESH_EDGE_WORKER_INDEX"
PARENT_PID_ENV = "CALLMESH_EDGE_PARENT_PID"
READY_FD_ENV = "CALLMESH_EDGE_READY_FD"
RUN_DIR_ENV = "CALLMESH_EDGE_RUN_DIR"
"""The pool's private directory: each worker's metrics and hand-on sockets."""
STEERING_ENV = "CALLMESH_EDGE_STEERING_FDS"
"""The kernel steering's map fds a worker inherits, comma-separated (`runtime.steering`)."""
METRICS_TIMEOUT = 2.0
READY_TIMEOUT = 60.0
RESTART_DELAY = 1.0


WORKER_SUFFIX = "-w"
"""A worker's instance name is its edge's with this and its index (``edge-a-w2``): what its
call events name as the edge."""


def edge_of(instance: str) -> str:
    """The edge an instance name is of: itself, or the edge of one of its workers."""
    name, _, index = instance.rpartition(WORKER_SUFFIX)
    return name if name and index.isdigit() else instance


class WorkerPool:
    """The child worker processes of one edge service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        wanted = settings.edge_workers
        if wanted > 1 and not (settings.redis_url and settings.rabbitmq_url):
            log.warning(
                "edge_workers=%d needs CALLMESH_REDIS_URL and CALLMESH_RABBITMQ_URL; "
                "running one worker",
                wanted,
            )
            wanted = 1
        self.count = wanted
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._directory = Path(tempfile.mkdtemp(prefix="callmesh-edge-")) if wanted > 1 else None
        self._steering: tuple[int, ...] = ()
        if wanted > 1 and settings.edge_kernel_steering:
            ports = sum(1 for address in settings.sip_addresses if address.transport == "udp")
            self._steering = create_maps(wanted, ports)

    def group(self, index: int) -> WorkerGroup | None:
        """Worker `index`'s place in the pool; ``None`` when the edge runs one worker."""
        if self._directory is None:
            return None
        return WorkerGroup(index, self.count, self._directory, self._steering)

    def metrics_source(self) -> MetricsSource:
        """The workers' metrics, for the main process's ``/metrics`` to fold in."""
        return MetricsSource(
            self.scrape_metrics,
            prefix="callmesh_edge_",
            gauges={
                "callmesh_edge_routing_version": "min",
                "callmesh_edge_target_state": "min",
                "callmesh_edge_shedding": "max",
            },
        )

    def hep_metrics_source(self) -> MetricsSource:
        """The workers' HEP counters (`shared.hep.metrics`), summed into ``/metrics`` too."""
        return MetricsSource(self.scrape_metrics, prefix="callmesh_hep_")

    async def scrape_metrics(self) -> list[str]:
        """Every live worker's exposition text (a worker that does not answer is left out)."""
        group = self.group(0)
        if group is None:
            return []
        paths = [group.metrics_path(index) for index in self._children]
        texts = await asyncio.gather(*(_read_metrics(path) for path in paths))
        return [text for text in texts if text is not None]

    async def traces(self, call_id: str) -> list[dict[str, Any]]:
        """Every live worker's kept messages of the call (see `trace_socket`)."""
        group = self.group(0)
        if group is None:
            return []
        paths = [group.trace_path(index) for index in self._children]
        found = await asyncio.gather(*(read_trace(path, call_id) for path in paths))
        return [entry for entries in found for entry in entries]

    @property
    def shared(self) -> bool:
        """Whether the sockets are shared with other workers (SO_REUSEPORT, private ports)."""
        return self.count > 1

    async def start(self) -> None:
        """Spawn the workers and return once each serves SIP (so the edge is ready only
        when the kernel's SO_REUSEPORT group is complete: joining later re-hashes flows)."""
        ready = [self._spawn(index) for index in range(1, self.count)]
        for reader in ready:
            async with asyncio.timeout(READY_TIMEOUT):
                await _wait_readable(reader)
        if self.count > 1:
            self._watch = asyncio.get_running_loop().create_task(self._restart_dead())

    def _spawn(self, index: int) -> int:
        """Start worker `index`; returns the pipe it writes to once ready (closed after)."""
        reader, writer = os.pipe()
        env = dict(os.environ, **{WORKER_INDEX_ENV: str(index), PARENT_PID_ENV: str(os.getpid())})
        env["CALLMESH_INSTANCE"] = f"{self.settings.instance}{WORKER_SUFFIX}{index}"
        env[READY_FD_ENV] = str(writer)
        if self._directory is not None:
            env[RUN_DIR_ENV] = str(self._directory)
        env[STEERING_ENV] = ",".join(map(str, self._steering))
        self._children[index] = subprocess.Popen(
            [sys.executable, "-m", "services.edge.runtime.worker_main"],
            env=env,
            pass_fds=(writer, *self._steering),
        )
        os.close(writer)
        return reader

    async def _restart_dead(self) -> None:
        while True:
            await asyncio.sleep(RESTART_DELAY)
            for index, child in list(self._children.items()):
                if child.poll() is not None:
                    log.warning(
                        "edge worker %d exited with %s; restarting", index, child.returncode
                    )
                    os.close(self._spawn(index))  # nobody waits for a restart's ready byte

    async def stop(self) -> None:
        await cancel_and_wait(self._watch)
        for child in self._children.values():
            child.terminate()
        for child in self._children.values():
            try:
                await asyncio.to_thread(child.wait, 5)
            except subprocess.TimeoutExpired:
                child.kill()
        self._children.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        for fd in self._steering:
            os.close(fd)
        self._steering = ()


async def _read_metrics(path: str) -> str | None:
    """A worker's metrics; a worker too busy to answer in time is left out of this scrape."""
    try:
        async with asyncio.timeout(METRICS_TIMEOUT):
            return await read_unix(path)
    except TimeoutError:
        return None


async def _wait_readable(fd: int) -> None:
    """Until the worker writes its ready byte (or exits, closing the pipe); then close it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def report_ready() -> None:
    """In a worker: tell the parent that this worker serves SIP."""
    fd = os.environ.get(READY_FD_ENV)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))
