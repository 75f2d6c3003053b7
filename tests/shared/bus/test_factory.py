"""``make_bus`` picks the bus the settings ask for."""

from __future__ import annotations

from shared.bus.amqp import AmqpBus
from shared.bus.factory import default_broker, make_bus
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.settings import Settings


def test_without_a_broker_url_services_share_the_in_process_broker() -> None:
    settings = Settings(rabbitmq_url=None, namespace="allinone", instance="box")
    routing = make_bus(settings, "routing")
    health = make_bus(settings, "health")
    assert isinstance(routing, MemoryBus) and isinstance(health, MemoryBus)
    assert routing.broker is health.broker is default_broker()
    assert (routing.namespace, routing.stream) == ("allinone", "routing/box")


def test_a_given_broker_is_used() -> None:
    broker = MemoryBroker()
    bus = make_bus(Settings(rabbitmq_url=None), "routing", broker)
    assert isinstance(bus, MemoryBus) and bus.broker is broker


def test_a_broker_url_gives_the_rabbitmq_bus() -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/"
    bus = make_bus(Settings(rabbitmq_url=url, namespace="prod", instance="h1"), "edge")
    assert isinstance(bus, AmqpBus)
    assert (bus.nodes.urls, bus.exchange_name, bus.queue_name("edge.x")) == (
        (url,),
        "prod.events",
        "prod.edge.x",
    )
    assert not bus.connected


def test_a_cluster_url_names_every_node() -> None:
    urls = "amqp://guest:guest@10.0.0.1:5672/, amqp://guest:guest@10.0.0.2:5672/"
    bus = make_bus(Settings(rabbitmq_url=urls), "edge")
    assert isinstance(bus, AmqpBus)
    assert bus.nodes.urls == (
        "amqp://guest:guest@10.0.0.1:5672/",
        "amqp://guest:guest@10.0.0.2:5672/",
    )
