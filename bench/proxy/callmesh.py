"""Callmesh's edge as the proxy under test, beside Kamailio.

The edge runs as in production: ``python -m services.edge`` (with
``edge_workers`` processes, two by default like Kamailio's ``children=2``)
against Redis and RabbitMQ, and loads its routing table from Redis at start.
So the table is written to Redis before launch, in the benchmark's own
namespace (emptied first), through the routing service's store: the same
records an operator's API calls would leave there.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from bench.proxy.proxy import Launch
from bench.proxy.routing import LOOPBACK, RoutingTable
from deploy.labs.namespaces import RABBITMQ_URL, REDIS_URL
from shared.dispatcher.model import Mode
from shared.routing_table.changes import Change
from shared.routing_table.model import Gateway, MediaRelay, Rule
from shared.routing_table.store import RoutingStore
from shared.store import Store

REPO = Path(__file__).resolve().parents[2]


async def provision(
    table: RoutingTable,
    redis_url: str,
    namespace: str,
    media_relay: MediaRelay | None = None,
    mode: Mode = "proxy",
) -> None:
    """Replace whatever `namespace` holds with `table`, its gateways set `media_relay`, its
    rules `mode`."""
    store = Store(aioredis.Redis.from_url(redis_url), namespace)
    try:
        await store.delete_namespace()
        await write_table(store, table, media_relay, mode)
    finally:
        await store.close()


async def write_table(
    store: Store, table: RoutingTable, media_relay: MediaRelay | None = None, mode: Mode = "proxy"
) -> None:
    """`table`'s gateways and rules (carrying their calls in `mode`) into `store`, as the
    routing API would write them."""
    changes = [
        Change(
            "upsert",
            "gateway",
            str(gateway.id),
            Gateway(
                address=f"sip:{gateway.host}:{gateway.port}",
                description=gateway.description,
                media_relay=media_relay,
            ),
        )
        for gateway in table.gateways
    ]
    changes += [
        Change(
            "upsert",
            "rule",
            str(rule.id),
            Rule(
                group=str(rule.group),
                prefix=rule.prefix,
                priority=rule.priority,
                gateways=tuple(str(gateway_id) for gateway_id in rule.gateway_ids),
                mode=mode,
            ),
        )
        for rule in table.rules
    ]
    await RoutingStore(store).apply(changes)


@dataclass(frozen=True, slots=True)
class CallmeshEdge:
    """The edge with the benchmark's timers (Kamailio's fr_timer/fr_inv_timer equivalents)."""

    port: int = 15062
    workers: int = 2
    http_port: int = 15090
    namespace: str = "bench-proxy"
    fr_timeout_s: float = 2.0
    fr_inv_timeout_s: float = 10.0
    redis_url: str = REDIS_URL
    rabbitmq_url: str = RABBITMQ_URL
    env: dict[str, str] = field(default_factory=dict)
    """More ``CALLMESH_*`` variables (e.g. HEP capture on, for `bench.capture_wire`)."""
    media_relay: MediaRelay | None = None
    """Every gateway's ``media_relay`` (`bench.media_relay_wire`); unset, the default's."""
    mode: Mode = "proxy"
    """Every rule's ``mode``: ``b2bua`` carries the calls by the B2BUA (`bench.b2bua`)."""

    @property
    def name(self) -> str:
        return "callmesh"

    def launch(self, table: RoutingTable, workdir: Path) -> Launch:
        asyncio.run(provision(table, self.redis_url, self.namespace, self.media_relay, self.mode))
        env = {
            "CALLMESH_NAMESPACE": self.namespace,
            "CALLMESH_REDIS_URL": self.redis_url,
            "CALLMESH_RABBITMQ_URL": self.rabbitmq_url,
            "CALLMESH_SIP_LISTEN": f"udp:{LOOPBACK}:{self.port}",
            "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{self.http_port}",
            "CALLMESH_EDGE_WORKERS": str(self.workers),
            "CALLMESH_FR_TIMEOUT": str(self.fr_timeout_s),
            "CALLMESH_FR_INV_TIMEOUT": str(self.fr_inv_timeout_s),
            "CALLMESH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
            **self.env,
        }
        ready = f"http://{LOOPBACK}:{self.http_port}/readyz"
        return Launch(argv=[sys.executable, "-m", "services.edge"], env=env, ready_url=ready)
