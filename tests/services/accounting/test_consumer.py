"""The queue handler: a database that cannot be reached holds the event, never drops it."""

from __future__ import annotations

import asyncio
import logging
import socket

from prometheus_client import REGISTRY

from services.accounting.batching import GroupCommit
from services.accounting.consumer import CallEventHandler
from services.accounting.store import Applied, RecordStore, open_engine
from shared.bus import Outcome, WorkMessage
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.services.accounting.calls import started
from tests.services.accounting.support import until


def store_errors() -> float:
    return REGISTRY.get_sample_value("callmesh_accounting_store_errors_total") or 0.0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_database_down_while_stopping_puts_the_event_back() -> None:
    engine = open_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/none")
    store = RecordStore(engine)
    stopping = asyncio.Event()
    announced: list[Applied] = []

    async def announce(applied: Applied) -> None:
        announced.append(applied)

    committer = GroupCommit(store)
    handler = CallEventHandler(committer.apply, announce, stopping, logging.getLogger("test"), 0.01)
    bus = MemoryBus(MemoryBroker(), "ns", "edge", "e1")
    body = bus.envelope(started()).to_bytes()
    before = store_errors()
    task = asyncio.create_task(handler([WorkMessage(body), WorkMessage(b"not json")]))
    await until(lambda: store_errors() >= before + 3)
    assert not task.done(), "the event waits for the database"
    stopping.set()
    requeued, dead = await task
    assert requeued == Outcome(requeue=True)
    assert dead.dead_reason is not None and "not an event envelope" in dead.dead_reason
    assert announced == []
    await committer.close()
    await store.close()
