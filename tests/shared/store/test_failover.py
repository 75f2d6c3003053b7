"""The switch watcher against a real Sentinel group: the old primary's connections dropped."""

import asyncio
import time

import pytest
from redis import Redis

from deploy.labs.sentinels import LOOPBACK, SentinelGroup, sentinel_group
from shared.settings import Settings
from shared.store import open_store
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

HEARD_WITHIN = 1.0
"""Seconds from the switch the test sees until the held command is answered: the watcher
hears it in milliseconds. Without it the command waits out the socket timeout `open_store`
gives it (5 s from the freeze, 2 to 3 s after the switch here)."""


async def _switch(group: SentinelGroup, old: int) -> float:
    """When the first Sentinel answering names another primary (polled each 50 ms)."""
    for _ in range(400):  # 20 s: only keeps a broken failover from hanging the test
        if await asyncio.to_thread(group.primary) != old:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError("the Sentinels named no new primary")


@pytest.mark.lab
async def test_a_command_held_by_a_hung_primary_goes_to_the_new_one_when_the_switch_is_announced(
    namespace: str,
) -> None:
    """A pooled connection to a primary that stopped answering (SIGSTOP) gives up at the
    switch, not after its socket timeout, and its command is written on the new primary;
    so is the next one, after the old primary answers again. Without the watcher the held
    command waits out its 5 s."""
    with sentinel_group() as group:
        store = await open_store(Settings(namespace=namespace, redis_url=group.url))
        try:
            await asyncio.gather(*(store.redis.set(store.key(f"warm{n}"), n) for n in range(4)))
            old = group.primary()
            group.freeze(old)
            held = asyncio.ensure_future(store.redis.set(store.key("held"), "1"))
            switched = await _switch(group, old)
            assert await held
            took = time.monotonic() - switched
            group.thaw(old)  # the old primary answers again, a primary still for seconds
            assert await store.redis.set(store.key("after"), "1")
            print(f"the held command answered {took:.2f}s after the switch")
            assert took < HEARD_WITHIN, took
            new = Redis(LOOPBACK, group.primary())
            try:
                assert new.exists(store.key("held"), store.key("after")) == 2
            finally:
                new.close()
        finally:
            await store.close()


async def test_a_plain_url_starts_no_watcher(namespace: str) -> None:
    store = await open_store(Settings(namespace=namespace, redis_url=REDIS_URL))
    try:
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "sentinel-watcher"]
    finally:
        await store.close()
