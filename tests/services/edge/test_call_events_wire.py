"""A SIPp call through a running edge yields its `edge.call.…` events on a queue bound on
RabbitMQ: what the accounting service will consume, as it goes over the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import pytest

from deploy.labs.ports import free_port
from shared.bus.amqp import AmqpBus
from shared.bus.base import Envelope
from shared.contracts.calls import CallEventBatch
from tests.conftest import RABBITMQ_URL
from tests.services.edge.support import (
    Edge,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

INSTANCE = "edge-events"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("call-events-wire")


@pytest.fixture(scope="module")
def edge(workdir: Path) -> Iterator[Edge]:
    with running_edge(workdir, instance=INSTANCE) as running:
        yield running


class CallEventQueue:
    """A queue of our own bound to `edge.call.#` on the namespace's exchange."""

    def __init__(self, namespace: str) -> None:
        self.exchange = AmqpBus(RABBITMQ_URL, namespace, "test", "t").exchange_name
        self.name = f"{self.exchange}.test-call-events"
        asyncio.run(self._declare())

    async def _declare(self) -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, auto_delete=False)
            await queue.bind(self.exchange, "edge.call.#")

    def read_until(
        self, done: Callable[[list[Envelope]], bool], timeout: float = 10.0
    ) -> list[Envelope]:
        """The envelopes taken off the queue until `done` says they are all there."""
        return asyncio.run(self._read_until(done, time.monotonic() + timeout))

    async def _read_until(
        self, done: Callable[[list[Envelope]], bool], deadline: float
    ) -> list[Envelope]:
        found: list[Envelope] = []
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.name)
            while not done(found):
                assert time.monotonic() < deadline, [e.type for e in found]
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                found.extend(unbatched(Envelope.from_bytes(message.body)))
        return found

    def delete(self) -> None:
        async def delete() -> None:
            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(self.name)

        asyncio.run(delete())


def unbatched(envelope: Envelope) -> list[Envelope]:
    """A subscriber's reading of ``edge.call.batch`` (an edge under load sends its waiting
    call events together): one envelope per event inside, as if each had come alone."""
    if envelope.type != CallEventBatch.routing_key:
        return [envelope]
    batch = CallEventBatch.model_validate(envelope.data)
    return [
        envelope.model_copy(
            update={"type": i.type, "schema_version": i.schema_version, "data": i.data}
        )
        for i in batch.events
    ]


@pytest.fixture
def events(edge: Edge) -> Iterator[CallEventQueue]:
    queue = CallEventQueue(edge.namespace)
    yield queue
    queue.delete()


def ended(envelopes: list[Envelope]) -> bool:
    return any(envelope.type == "edge.call.ended" for envelope in envelopes)


def test_a_call_hung_up_by_the_caller_is_five_events(
    edge: Edge, workdir: Path, events: CallEventQueue
) -> None:
    port = free_port()
    edge.route({"ev1": port}, {"ev1": ("1701", ["ev1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "17015550001", "-set", "hold", "0"),
    )
    assert caller.wait() == 0, edge.log()
    assert gateway.wait() == 0
    envelopes = events.read_until(ended)
    by_type = {envelope.type: envelope.data for envelope in envelopes}
    assert sorted(by_type) == sorted(
        f"edge.call.{kind}" for kind in ("started", "ringing", "branch", "answered", "ended")
    )
    assert len(envelopes) == 5
    assert {envelope.instance for envelope in envelopes} == {INSTANCE}
    assert {data["edge"] for data in by_type.values()} == {INSTANCE}
    assert len({(data["call_id"], data["from_tag"]) for data in by_type.values()}) == 1
    started, branch = by_type["edge.call.started"], by_type["edge.call.branch"]
    assert (started["callee"], started["rule"], started["transport"]) == (
        "17015550001",
        "ev1",
        "udp",
    )
    assert (branch["target"], branch["target_kind"], branch["status"]) == ("ev1", "gateway", 200)
    assert by_type["edge.call.ringing"]["status"] == 180
    answered, hangup = by_type["edge.call.answered"], by_type["edge.call.ended"]
    assert hangup["to_tag"] == answered["to_tag"]  # the caller's BYE: its own From tag first
    assert hangup["status"] == 200
    assert abs(started["at"] - time.time()) < 60  # wall time, not the loop's clock
    assert started["at"] <= branch["sent_at"] <= branch["at"] <= hangup["at"]


def test_a_call_hung_up_by_the_gateway_has_the_tags_swapped(
    edge: Edge, workdir: Path, events: CallEventQueue
) -> None:
    port, caller_port = free_port(), free_port()
    edge.route({"ev2": port}, {"ev2": ("1702", ["ev2"])})
    bye_here = ("-set", "hold", "200", "-set", "bye_port", str(edge.sip_port))
    gateway = sipp(workdir, "gateway_sends_bye", port, args=bye_here)
    wait_bound(port)
    caller = sipp(
        workdir, "caller_takes_bye", caller_port, remote=edge.sip_port, args=("-s", "17025550001")
    )
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    assert caller.wait() == 0, caller.errors()
    by_type = {envelope.type: envelope.data for envelope in events.read_until(ended)}
    started, hangup = by_type["edge.call.started"], by_type["edge.call.ended"]
    assert hangup["to_tag"] == started["from_tag"]
    assert hangup["from_tag"] == by_type["edge.call.answered"]["to_tag"]
