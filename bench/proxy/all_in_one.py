"""The all-in-one (``python -m services``, what ``make run`` starts) as the proxy under test.

Its CPU per call is wanted beside the edge's: one process holding every
service, with no Redis or RabbitMQ (the embedded store and the in-process bus),
call records written to SQLite.  Its routing table is written before it starts
into the embedded store's snapshot under its own data directory, which it loads
at start: the same records an operator's API calls would leave there.  Gateway
probing is off (``CALLMESH_HEALTH_PROBE_MODE=never``): the benchmark's SIPp
gateways do not answer OPTIONS, and the edge-only setup has no health service.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import fakeredis

from bench.proxy.callmesh import REPO, write_table
from bench.proxy.proxy import Launch
from bench.proxy.routing import LOOPBACK, RoutingTable
from shared.store.embedded import EmbeddedStore

NAMESPACE = "bench-all-in-one"
SERVER_VARIABLES = (
    "CALLMESH_REDIS_URL",
    "CALLMESH_RABBITMQ_URL",
    "CALLMESH_ACCOUNTING_DATABASE_URL",
)


async def provision_snapshot(table: RoutingTable, data_dir: Path) -> None:
    """A fresh `data_dir` whose store snapshot holds `table` (and nothing else)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    store = EmbeddedStore(client, NAMESPACE, data_dir / f"store-{NAMESPACE}.snapshot")
    await write_table(store, table)
    await store.close()  # writes the snapshot


@dataclass(frozen=True, slots=True)
class AllInOne:
    """The all-in-one with the benchmark's timers (as `CallmeshEdge`'s)."""

    port: int = 15064
    http_port: int = 15092
    fr_timeout_s: float = 2.0
    fr_inv_timeout_s: float = 10.0

    @property
    def name(self) -> str:
        return "callmesh-aio"

    def launch(self, table: RoutingTable, workdir: Path) -> Launch:
        data_dir = workdir / "all-in-one-data"
        asyncio.run(provision_snapshot(table, data_dir))
        env = {
            "CALLMESH_NAMESPACE": NAMESPACE,
            "CALLMESH_DATA_DIR": str(data_dir),
            "CALLMESH_SIP_LISTEN": f"udp:{LOOPBACK}:{self.port}",
            "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{self.http_port}",
            "CALLMESH_HEALTH_PROBE_MODE": "never",
            "CALLMESH_FR_TIMEOUT": str(self.fr_timeout_s),
            "CALLMESH_FR_INV_TIMEOUT": str(self.fr_inv_timeout_s),
            "CALLMESH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        # The embedded store and bus and SQLite, whatever servers the caller's environment names
        # (`env` execs the process: the same pid, its CPU measured as the edge's).
        unset = [f"--unset={name}" for name in SERVER_VARIABLES]
        return Launch(argv=["env", *unset, sys.executable, "-m", "services"], env=env)
