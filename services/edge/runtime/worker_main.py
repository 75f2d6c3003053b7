"""One extra edge worker process, ``python -m services.edge.runtime.worker_main``.

Started by `WorkerPool`, not by hand.  It serves SIP only: the HTTP API and
probes are the main process's, which also serves this worker's metrics (read
from the Unix socket this worker listens on).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.gc_tuning import tune_for_proxy
from services.edge.runtime.pool import (
    PARENT_PID_ENV,
    RUN_DIR_ENV,
    STEERING_ENV,
    WORKER_INDEX_ENV,
    report_ready,
)
from services.edge.runtime.startup import start_edge
from services.edge.runtime.trace_socket import serve_trace
from shared import event_loop
from shared.api.metrics import serve_unix
from shared.bus.factory import make_bus
from shared.logs import configure_logging
from shared.settings import Settings
from shared.store import open_store

log = logging.getLogger("callmesh.edge")

PR_SET_PDEATHSIG = 1


async def serve(settings: Settings) -> None:
    store = await open_store(settings)
    bus = make_bus(settings, "edge", None)
    await bus.start()
    steering = tuple(int(fd) for fd in os.environ.get(STEERING_ENV, "").split(",") if fd)
    for fd in steering:
        os.set_inheritable(fd, False)  # ours: no subprocess of this worker's gets it
    group = WorkerGroup(
        int(os.environ[WORKER_INDEX_ENV]),
        settings.edge_workers,
        Path(os.environ[RUN_DIR_ENV]),
        steering,
    )
    edge = await start_edge(settings, bus, store, group=group)
    metrics_server = await serve_unix(group.metrics_path(group.index))
    trace_server = await serve_trace(group.trace_path(group.index), edge.trace)
    tune_for_proxy()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    report_ready()
    log.info("edge worker ready")
    try:
        await stopping.wait()
    finally:
        metrics_server.close()
        trace_server.close()
        await edge.stop()
        await bus.close()
        await store.close()


def die_with_parent() -> None:
    """A worker must not outlive its edge (SIGKILLed, it could not stop us): it would
    keep a share of the port and answer for an edge that is gone.  Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(os.environ.get(PARENT_PID_ENV, os.getppid())):
        raise SystemExit(0)  # the parent died before prctl took effect


def main() -> None:
    die_with_parent()
    settings = Settings()
    configure_logging("edge-worker", settings.instance, settings.log_level)
    event_loop.run(serve(settings))


if __name__ == "__main__":
    main()
