"""Fixtures every test may use: the real broker and Redis, and a fresh namespace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from deploy.labs.namespaces import RABBITMQ_URL as RABBITMQ_URL  # noqa: PLC0414 - re-exported
from deploy.labs.namespaces import REDIS_URL as REDIS_URL  # noqa: PLC0414 - re-exported
from shared import extensions
from shared.store import Store
from tests.isolation import BROKER_MARKERS, broker_ports, isolated


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which build the run tested: `make test` runs the suite compiled, then partly pure."""
    terminalreporter.write_line(f"callmesh: {extensions.STATE}")


@pytest.fixture(autouse=True)
def unit_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked integration or wire fails if it reaches a broker or starts SIPp."""
    if any(request.node.get_closest_marker(name) for name in BROKER_MARKERS):
        yield
        return
    strayed: list[str] = []
    with isolated(broker_ports(RABBITMQ_URL, REDIS_URL), strayed.append):
        yield
    if strayed:
        pytest.fail(strayed[0], pytrace=False)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test run uses: every exchange, queue and key lives under it."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_store(namespace: str) -> AsyncIterator[Store]:
    """A :class:`Store` on the real Redis; its namespace is removed afterwards."""
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    yield store
    await store.delete_namespace()
    await store.close()
