"""The Redis client against real redis-server processes: a Sentinel group, a dead port."""

import asyncio
import signal
import time
import uuid

import pytest
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError

from deploy.labs.ports import free_port
from deploy.labs.sentinels import DOWN_AFTER_MS, sentinel_group
from shared.store import Store
from shared.store.client import NotReplicatedError, redis_client
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.mark.lab
async def test_acknowledged_writes_survive_a_failover_the_client_follows_on_its_own() -> None:
    with sentinel_group() as group:
        client = redis_client(group.url, wait=10.0, socket_connect_timeout=1, socket_timeout=2)
        store = Store(client, "failover", wait_replicas=1)
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        try:
            for _ in range(50):
                await store.durable(count, ["failover:n"], [])
            old = group.primary()
            group.kill(old)
            started = time.monotonic()
            # Waits through the failover (its first connections still dial the dead primary).
            assert await store.durable(count, ["failover:n"], []) == 51
            took = time.monotonic() - started
            assert group.primary() != old
            # Sentinel's detection and election, then at most one WAIT timeout on the
            # promoted primary, which has no replica left to wait for.
            assert took < DOWN_AFTER_MS / 1000 + 2 + 1 + 2, took
        finally:
            await client.aclose()


@pytest.mark.lab
async def test_a_durable_write_sent_where_its_script_is_unknown_is_sent_again_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CI run's registrations died on NoScriptError after a failover: the durable pipeline
    checked its script on the old primary, then its retry ran on the promoted replica, which
    holds no script (SCRIPT LOAD is not replicated).  Here the script is lost between the
    check and the run on the same server: the write must still be done, and done once."""
    checked = Pipeline.load_scripts
    lost: list[bool] = []

    async def check_then_lose(pipe: Pipeline) -> None:
        await checked(pipe)  # type: ignore[no-untyped-call]
        if not lost:
            lost.append(True)
            await pipe.immediate_execute_command("SCRIPT", "FLUSH")  # type: ignore[no-untyped-call]

    with sentinel_group() as group:
        client = redis_client(group.url, wait=5.0)
        store = Store(client, "noscript", wait_replicas=1)
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        monkeypatch.setattr(Pipeline, "load_scripts", check_then_lose)
        try:
            assert await store.durable(count, ["noscript:n"], []) == 1
            assert lost == [True]
            assert await client.get("noscript:n") == b"1"
        finally:
            await client.aclose()


async def test_a_write_to_an_unreachable_redis_fails_after_the_wait_it_was_given() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", wait=0.5, socket_connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await client.set("k", "v")
    assert 0.5 <= time.monotonic() - started < 2.0
    await client.aclose()


async def test_a_burst_wider_than_the_pool_waits_for_connections_not_refused() -> None:
    """Ten commands that each hold a connection 0.2 s, on a pool of two: all are answered."""
    client = redis_client(REDIS_URL, wait=5.0, max_connections=2)
    key = f"pool-{uuid.uuid4().hex}"
    try:
        answers = await asyncio.gather(*(client.blpop([key], timeout=0.2) for _ in range(10)))
        assert answers == [None] * 10
    finally:
        await client.aclose()


async def test_a_pool_held_longer_than_the_wait_reports_redis_unavailable() -> None:
    client = redis_client(REDIS_URL, wait=0.3, max_connections=1)
    key = f"pool-{uuid.uuid4().hex}"
    try:
        holder = asyncio.ensure_future(client.blpop([key], timeout=2))
        await asyncio.sleep(0.1)
        with pytest.raises(RedisConnectionError):
            await client.get(key)
        assert await holder is None
    finally:
        await client.aclose()


@pytest.mark.lab
async def test_a_write_no_replica_acknowledges_in_time_is_refused() -> None:
    with sentinel_group() as group:
        client = redis_client(group.url, wait=2.0)
        patient = Store(client, "stalled", wait_replicas=1, wait_timeout_ms=10_000)
        hurried = Store(client, "stalled", wait_replicas=1, wait_timeout_ms=300)
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        try:
            assert await patient.durable(count, ["stalled:n"], []) == 1
            (replica,) = (port for port in group.servers if port != group.primary())
            group.servers[replica].send_signal(signal.SIGSTOP)  # connected, silent
            try:
                with pytest.raises(NotReplicatedError, match="0 of 1 replica"):
                    await hurried.durable(count, ["stalled:n"], [])
            finally:
                group.servers[replica].send_signal(signal.SIGCONT)
        finally:
            await client.aclose()
