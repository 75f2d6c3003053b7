"""How long an edge pair on a virtual IP stops answering when its active side fails.

Run ``python -m bench.vip [--runs N]`` (or ``python -m bench vip``), as root,
against the Redis and RabbitMQ of the environment (``CALLMESH_REDIS_URL``,
``CALLMESH_RABBITMQ_URL``; a fresh namespace, removed afterwards). It builds the
lab of ``deploy/vip/lab.py``: two boxes (network namespaces) each running an
edge on the VIP and keepalived with the deployment's configuration
(``deploy/vip/keepalived.conf.template``), and a callers' namespace. Then, N
times each, the master fails in one of two ways:

- ``box``: every process of the master's box SIGKILLed, keepalived too (the box
  dying): the backup takes over when the advertisements stop (3 x advert_int
  plus its skew);
- ``edge``: only the master's edge SIGKILLed: keepalived's check of ``/readyz``
  fails twice, the box goes to FAULT and hands the VIP over at once.

For each: ``move``, seconds from the kill until the other box holds the VIP,
and ``outage``, seconds from the kill until the VIP answers OPTIONS again for
good, seen from the callers' namespace (``deploy/vip/probe.py``, one OPTIONS
every 20 ms: what a new call placed then waits at most). The failed side is
brought back as the backup before the next run. Printed: median, min and max
of each, per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from deploy.vip.lab import Box, Lab, vip_lab
from deploy.vip.probe import outage
from shared.bus.amqp import AmqpBus
from shared.store import Store

REDIS_URL = os.environ.get("CALLMESH_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("CALLMESH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
HTTP_PORT = 8080
PROBE_FOR = 5.0
"""Seconds the callers' side probes around one failure (the kill comes 0.5 s in)."""


def _key() -> str:
    return "1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


def fail(lab: Lab, master: Box, backup: Box, kill: Callable[[Box], None]) -> tuple[float, float]:
    prober = lab.start_probe(PROBE_FOR)
    time.sleep(0.5)
    kill(master)
    failed_at = time.monotonic()
    moved = lab.wait_holder(backup, 10)
    out, _ = prober.communicate(timeout=PROBE_FOR + 10)
    return moved, outage(json.loads(out)["sent"], failed_at)


def restore(lab: Lab, box: Box, env: dict[str, str], whole_box: bool) -> None:
    """Bring `box` back as the backup: its edge (and, after a box failure, keepalived)."""
    if whole_box:
        lab.drop_vip(box)
    lab.start_edge(box, dict(env, **lab.edge_settings(box, HTTP_PORT)))
    lab.wait_ready(box, HTTP_PORT)
    if whole_box:
        lab.start_keepalived(box, 100, HTTP_PORT)
    time.sleep(3.0)  # keepalived's check passes twice (rise 2, 1 s apart): BACKUP again


def run(runs: int, folder: Path, namespace: str) -> dict[str, list[tuple[float, float]]]:
    env = dict(
        os.environ,
        CALLMESH_NAMESPACE=namespace,
        CALLMESH_API_TOKEN=uuid.uuid4().hex,
        CALLMESH_RECORD_ROUTE_KEYS=_key(),
        CALLMESH_TOPOLOGY_KEYS=_key(),
        CALLMESH_LOG_LEVEL="WARNING",
    )
    results: dict[str, list[tuple[float, float]]] = {"box": [], "edge": []}
    with vip_lab(folder, REDIS_URL, RABBITMQ_URL) as lab:
        for box in lab.boxes.values():
            lab.start_edge(box, dict(env, **lab.edge_settings(box, HTTP_PORT)))
        for box in lab.boxes.values():
            lab.wait_ready(box, HTTP_PORT)
        master, backup = lab.boxes["a"], lab.boxes["b"]
        lab.start_keepalived(master, 100, HTTP_PORT)
        lab.wait_holder(master, 15)
        lab.start_keepalived(backup, 100, HTTP_PORT)
        time.sleep(3.0)
        for mode in ("box", "edge"):
            for _ in range(runs):
                whole_box = mode == "box"
                kill = lab.kill if whole_box else (lambda box: lab.kill_one(box, "edge"))
                results[mode].append(fail(lab, master, backup, kill))
                restore(lab, master, env, whole_box)
                master, backup = backup, master
    return results


async def remove(namespace: str) -> None:
    bus = AmqpBus(RABBITMQ_URL, namespace, "bench", "cleanup")
    await bus.start()
    await bus.delete_topology()
    await bus.close()
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    await store.delete_namespace()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="failures of each kind")
    args = parser.parse_args()
    namespace = f"bench-vip-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-vip-") as folder:
            results = run(args.runs, Path(folder), namespace)
    finally:
        asyncio.run(remove(namespace))
    print(f"{args.runs} failures of each kind; VRRP advert_int 0.5 s; OPTIONS every 20 ms")
    print(f"{'failure':<28}{'figure':<10}{'median s':>10}{'min s':>8}{'max s':>8}")
    names = {"box": "box killed (all processes)", "edge": "edge killed (keepalived up)"}
    for mode, rows in results.items():
        for column, figure in enumerate(("move", "outage")):
            values = [row[column] for row in rows]
            print(
                f"{names[mode]:<28}{figure:<10}{statistics.median(values):>10.2f}"
                f"{min(values):>8.2f}{max(values):>8.2f}"
            )


if __name__ == "__main__":
    main()
