"""The parts the drill kills, one per step: how each is killed and brought back.

A step's ``kill`` is the failure (SIGKILL: no goodbye, as a crash or a dead box);
its ``restore`` is what a supervisor or an operator does next (the process
restarted, the old Redis primary back as a replica, the RabbitMQ node rejoining,
the dead box rebooted as the VIP's backup), and returns once the part is back.
A step whose lab cannot run here has ``not_run``, the reason, and is reported
as such.

The whole-DC step needs two sites, not the platform: it has ``own_lab`` and its
kill and restore live with its lab (``whole_dc.py``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.drill.platform import BOX_HTTP_PORT, CALLS_EDGE, Platform
from deploy.labs.rabbit_cluster import CTL, Node

DOWN = 1.0
"""Seconds a killed process stays down before it is started again (a supervisor's delay)."""


@dataclass(frozen=True)
class Step:
    key: str
    """What ``--steps`` calls it."""
    name: str
    kill: Callable[[Platform], tuple[object, float]] | None = None
    """Returns what it killed (for `restore`) and when the signal went: finding the part to
    kill (the VIP's holder, the busiest node) takes time that is not the outage's."""
    restore: Callable[[Platform, object], None] | None = None
    """Given what `kill` returned (the killed node, the box)."""
    via_vip: bool = False
    """Calls go to the VIP from the callers' namespace (else to edge-a on loopback)."""
    not_run: str = ""
    own_lab: bool = False
    """Run in a lab of its own after the platform's steps (`deploy.drill.whole_dc`)."""


def _service(name: str) -> Step:
    def kill(platform: Platform) -> tuple[object, float]:
        killed_at = time.time()
        platform.kill(name)
        return name, killed_at

    def restore(platform: Platform, _: object) -> None:
        time.sleep(DOWN)
        platform.start(name)

    if name == CALLS_EDGE:
        return Step("edge", f"an edge ({name}, taking the calls)", kill, restore)
    return Step(name, f"the {name} service", kill, restore)


def _kill_redis_primary(platform: Platform) -> tuple[object, float]:
    group = platform.sentinels
    old = group.primary()
    killed_at = time.time()
    group.kill(old)
    return old, killed_at


def _restore_redis_primary(platform: Platform, old: object) -> None:
    """The new primary named, then the old one back as its replica."""
    group = platform.sentinels
    assert isinstance(old, int)
    deadline = time.monotonic() + 30
    while (primary := group.primary()) == old:
        assert time.monotonic() < deadline, "the Sentinels named no new primary in 30 s"
        time.sleep(0.1)
    group.start_server(old, replica_of=primary)
    group.wait_ready(replicas=1, within=60)


def busiest(platform: Platform) -> Node:
    """The node holding the most client connections (the services pick nodes at random)."""
    cluster = platform.rabbit
    listed = subprocess.run(
        [CTL, "-n", cluster.nodes[0].name, "-q", "list_connections", "node"],
        env=cluster.env(), capture_output=True, text=True, timeout=60, check=False,
    ).stdout.split()  # fmt: skip # one command
    counts = {node.name: listed.count(node.name) for node in cluster.nodes}
    return max(cluster.nodes, key=lambda node: counts[node.name])


def _kill_rabbit_node(platform: Platform) -> tuple[object, float]:
    node = busiest(platform)
    killed_at = time.time()
    platform.rabbit.kill(node)
    return node, killed_at


def _restore_rabbit_node(platform: Platform, node: object) -> None:
    assert isinstance(node, Node)
    time.sleep(DOWN)
    platform.rabbit.restart(node)


def _kill_active_box(platform: Platform) -> tuple[object, float]:
    """Every process of the box holding the VIP (keepalived, its edge, its forwarders)."""
    lab = platform.lab
    assert lab is not None
    master = next(box for box in lab.boxes.values() if lab.holds(box))
    backup = next(box for box in lab.boxes.values() if box is not master)
    killed_at = time.time()
    lab.kill(master)
    lab.wait_holder(backup, 10)
    return master.name, killed_at


def _restore_box(platform: Platform, name: object) -> None:
    """The box rebooted: without the VIP, its edge ready, keepalived back as the backup."""
    lab = platform.lab
    assert lab is not None and isinstance(name, str)
    box = lab.boxes[name]
    lab.drop_vip(box)
    platform.start_box(name)
    lab.start_keepalived(box, 100, BOX_HTTP_PORT)
    time.sleep(3.0)  # keepalived's check passes twice (rise 2, a second apart): BACKUP


def steps(vip_not_run: str) -> list[Step]:
    """Every step, in the drill's order."""
    vip = Step("vip", "the active box of the VIP pair", _kill_active_box, _restore_box, True)
    return [
        _service(CALLS_EDGE),
        _service("registrar"),
        _service("routing"),
        _service("health"),
        _service("accounting"),
        Step("redis", "the Redis primary", _kill_redis_primary, _restore_redis_primary),
        Step("rabbitmq", "a RabbitMQ node (the busiest)", _kill_rabbit_node, _restore_rabbit_node),
        Step(vip.key, vip.name, not_run=vip_not_run) if vip_not_run else vip,
        Step("dc", "a whole data centre (DC 1 of two; the load on DC 2)", own_lab=True),
    ]
