"""The edge's health feed on the real RabbitMQ and Redis: load, events, resync after a cut."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.edge.feeds.health import HealthFeed
from shared.bus.amqp import AmqpBus
from shared.contracts.health import (
    DispatcherSetDeleted,
    DispatcherSetUpserted,
    TargetRemoved,
    TargetState,
    TargetStateName,
)
from shared.dispatcher import DispatcherSet
from shared.health.store import HealthStore
from shared.routing_table.cache import GatewayHealth
from shared.store import Store
from tests.conftest import RABBITMQ_URL
from tests.services.routing.support import cut_connection
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

FARM = DispatcherSet.model_validate({"destinations": [{"uri": "sip:10.0.0.1"}]})


def gateway(gateway_id: str, state: TargetStateName) -> TargetState:
    return TargetState(
        target=f"gw:{gateway_id}",
        kind="gateway",
        address="sip:192.0.2.1",
        gateway_id=gateway_id,
        state=state,
        reason="test",
        since=time.time(),
    )


def destination(uri: str, state: TargetStateName) -> TargetState:
    return TargetState(
        target=f"ds:farm:{uri}",
        kind="destination",
        address=uri,
        set_id="farm",
        state=state,
        reason="test",
        since=time.time(),
    )


@dataclass
class Fed:
    feed: HealthFeed
    bus: AmqpBus
    health: HealthStore
    publisher: AmqpBus


@pytest.fixture
async def fed(namespace: str, redis_store: Store) -> AsyncIterator[Fed]:
    health = HealthStore(redis_store)
    await health.write_override(gateway("1", "down"))
    await health.write_override(destination("sip:10.0.0.1", "probing"))
    await health.put_dispatcher_set("farm", FARM)
    bus = AmqpBus(RABBITMQ_URL, namespace, "edge", "e1")
    publisher = AmqpBus(RABBITMQ_URL, namespace, "health", "h1")
    await bus.start()
    await publisher.start()
    feed = HealthFeed(redis_store, bus, GatewayHealth())
    await feed.start()
    try:
        yield Fed(feed, bus, health, publisher)
    finally:
        await feed.stop()
        await bus.close()
        await publisher.close()


async def test_loads_the_stored_states_and_sets_at_start(fed: Fed) -> None:
    feed = fed.feed
    assert feed.gateways.state("1") == "down"
    assert feed.gateways.state("2") == "unknown"
    assert dict(feed.sets.states("farm")) == {"sip:10.0.0.1": "probing"}
    found = feed.sets.dispatcher("farm")
    assert found is not None and found.set == FARM


async def test_follows_state_removal_and_set_events(fed: Fed) -> None:
    feed, publish = fed.feed, fed.publisher.publish
    await publish(gateway("1", "up"))
    await publish(gateway("2", "disabled"))
    await until(lambda: feed.gateways.state("2") == "disabled")
    assert feed.gateways.state("1") == "up"
    await publish(TargetRemoved(target="gw:1"))
    await until(lambda: feed.gateways.state("1") == "unknown")

    bigger = DispatcherSet.model_validate(
        {"algorithm": "priority", "destinations": [{"uri": "sip:10.0.0.1"}, {"uri": "sip:x"}]}
    )
    await publish(DispatcherSetUpserted(set_id="farm", set=bigger))
    await publish(destination("sip:x", "down"))
    await until(lambda: feed.sets.states("farm").get("sip:x") == "down")
    found = feed.sets.dispatcher("farm")
    assert found is not None and found.set == bigger
    await publish(DispatcherSetDeleted(set_id="farm"))
    await until(lambda: feed.sets.dispatcher("farm") is None)


async def test_a_dns_target_of_a_destination_by_name_has_a_state_of_its_own(fed: Fed) -> None:
    """`ds:farm:{uri}@{label}`, probed at an address: its state is the set's `{uri}@{label}`."""
    feed, publish = fed.feed, fed.publisher.publish
    label = "udp:a.farm.test:5070"
    record = destination("sip:farm.test", "down").model_copy(
        update={"target": f"ds:farm:sip:farm.test@{label}", "address": "sip:127.0.0.1:5070"}
    )
    await publish(record)
    await until(lambda: feed.sets.states("farm").get(f"sip:farm.test@{label}") == "down")
    assert "sip:127.0.0.1:5070" not in feed.sets.states("farm")
    await publish(TargetRemoved(target=record.target))
    await until(lambda: f"sip:farm.test@{label}" not in feed.sets.states("farm"))


async def test_resyncs_from_redis_after_the_connection_is_cut(fed: Fed) -> None:
    feed = fed.feed
    loads = feed.loads
    await cut_connection(fed.bus.connection_name)
    # Written while the edge's connection is down: no event would reach it.
    await fed.health.write_override(gateway("1", "up"))
    await fed.health.delete_dispatcher_set("farm")
    await until(lambda: feed.loads > loads)
    await until(lambda: feed.gateways.state("1") == "up")
    assert feed.sets.dispatcher("farm") is None
