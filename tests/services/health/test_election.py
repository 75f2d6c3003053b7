"""Several health instances: one prober at a time, and a killed prober is replaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from deploy.labs.ports import free_port
from shared.store import Store
from tests.services.health.support import FAST, HealthProcess, responder, seed_gateways

pytestmark = [pytest.mark.integration, pytest.mark.wire]

START_WITHIN = 30.0
"""Two Python processes starting on a shared, loaded machine."""
PROBES = 5
"""Probes watched while both instances run: two probers would show as two sources."""


async def lease_holder(store: Store) -> str | None:
    raw = await store.redis.get(store.key("health", "prober"))
    return raw.decode() if isinstance(raw, bytes) else raw


async def wait_for_probes(probes: Callable[[], int], count: int, within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if probes() >= count:
                return
            await asyncio.sleep(0.05)


async def wait_for_holder(store: Store, holder: str, within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if await lease_holder(store) == holder:
                return
            await asyncio.sleep(0.1)


async def wait_ready(instance: HealthProcess, within: float) -> None:
    """Until the process answers /readyz with 200: its bus, store and lease loop are up."""
    async with asyncio.timeout(within), httpx.AsyncClient(base_url=instance.url) as client:
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_two_instances_probe_once_per_interval_and_hand_over_when_killed(
    namespace: str, redis_store: Store
) -> None:
    port = free_port()
    far_end = await responder(port)
    await seed_gateways(redis_store, {"1": f"sip:127.0.0.1:{port}"})
    instances = {name: HealthProcess(namespace, name) for name in ("ha", "hb")}
    try:
        for instance in instances.values():
            await wait_ready(instance, START_WITHIN)
        await wait_for_probes(lambda: far_end.probes, 1, START_WITHIN)
        # Both are up and competing for the lease: the next probes all come from one of them.
        before = far_end.probes
        await wait_for_probes(lambda: far_end.probes, before + 1, 5.0)
        first = time.monotonic()
        await wait_for_probes(lambda: far_end.probes, before + PROBES, PROBES * 5.0)
        assert len(set(far_end.sources[before:])) == 1, far_end.sources[before:]
        # One interval between probes, give or take a late first one: a busy machine only
        # stretches this, so it is a lower bound.
        assert time.monotonic() - first >= (PROBES - 2) * FAST.probe_interval

        prober = await lease_holder(redis_store)
        assert prober in instances
        instances[prober].kill()
        killed_at, killed = far_end.probes, time.monotonic()
        standby = next(name for name in instances if name != prober)
        await wait_for_holder(redis_store, standby, FAST.lease_ttl + 5.0)
        print(f"handover after {time.monotonic() - killed:.2f} s")
        await wait_for_probes(lambda: far_end.probes, killed_at + 2, 5 * FAST.probe_interval)
        # The control of the check above: another prober shows as another source.
        assert far_end.sources[-1] not in far_end.sources[before:killed_at]
    finally:
        for instance in instances.values():
            instance.stop()
        far_end.close()
