"""The edge's fraud round trip: the crossings a call reached go out as events with their
figures, and a store that does not answer lets calls through (fail open), once logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from services.edge.runtime.fraud import FraudRunner
from services.edge.runtime.publisher import EventPublisher
from shared.bus import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.fraud.rules import FraudIndex, FraudQuery, FraudRuleBody, FraudVerdict
from shared.fraud.store import FraudStore
from shared.settings import Settings
from shared.store.embedded import open_embedded
from tests.shared.bus.support import until

ALICE = "subscriber:alice@example.com"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FraudStore]:
    embedded = await open_embedded(Settings(namespace="t", data_dir=str(tmp_path)))
    yield FraudStore(embedded, minute_ms=6000)
    await embedded.close()


def query(call_id: str) -> FraudQuery:
    index = FraudIndex()
    rule = {
        "caller": ALICE,
        "prefixes": ["1900"],
        "calls_per_minute": {"warning": 1, "critical": 2},
    }
    index.put("premium", FraudRuleBody.model_validate({**rule, "block": "account"}))
    found = index.query(call_id, ALICE, "19005551234")
    assert found is not None
    return found


def checks(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("callmesh_edge_fraud_checks_total", {"outcome": outcome})
    return sample or 0.0


async def test_crossings_are_published_with_their_figures(store: FraudStore) -> None:
    broker = MemoryBroker()
    bus = MemoryBus(broker, "t", "edge", "edge-a")
    listener = MemoryBus(broker, "t", "test", "listener")
    await bus.start()
    await listener.start()
    heard: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        heard.append(envelope)

    await listener.subscribe(["fraud.#"], collect)
    try:
        await _check_twice(store, bus, heard)
    finally:
        await listener.close()
        await bus.close()


async def _check_twice(store: FraudStore, bus: MemoryBus, heard: list[Envelope]) -> None:
    runner = FraudRunner(store, EventPublisher(bus), "edge-a")
    refused = checks("refused")
    first = await runner.check(query("c1"))
    second = await runner.check(query("c2"))
    assert first is not None and first.admitted
    assert second is not None and not second.admitted
    assert checks("refused") == refused + 1
    await until(lambda: len(heard) == 2)
    assert [e.type for e in heard] == ["fraud.threshold.warning", "fraud.threshold.critical"]
    critical = heard[1].data
    assert (critical["value"], critical["threshold"], critical["window"]) == (2.0, 2, 6.0)
    assert (critical["block"], critical["blocked"]) == (second.block_id, "account")
    assert (critical["call_id"], critical["source"], critical["account"]) == ("c2", "edge-a", ALICE)


class Away(FraudStore):
    """A store whose Redis is away."""

    def __init__(self) -> None:
        self.minute_ms = 60_000

    async def check(self, query: FraudQuery, now_ms: int | None = None) -> FraudVerdict:
        raise RedisConnectionError("Connection refused")


async def test_a_store_that_does_not_answer_lets_calls_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MemoryBus(MemoryBroker(), "t", "edge", "edge-a")
    runner = FraudRunner(Away(), EventPublisher(bus), "edge-a")
    unknown = checks("unknown")
    with caplog.at_level(logging.WARNING, "callmesh.edge.fraud"):
        assert await runner.check(query("c1")) is None
        assert await runner.check(query("c2")) is None
    assert checks("unknown") == unknown + 2
    lines = [r.getMessage() for r in caplog.records if r.name == "callmesh.edge.fraud"]
    assert len(lines) == 1 and "unscreened" in lines[0]  # one line per outage, not per call
