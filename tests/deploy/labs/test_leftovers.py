"""The sweep of leftover test queues, on the shared broker (a pattern of the test's own) and
on a broker of its own wedged by more queues than file handles, as CI's was."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from deploy.labs.leftovers import PATTERN, POLICY, Broker, main, sweep
from deploy.labs.rabbit_cluster import CTL, rabbit_cluster
from shared.bus.amqp_link import QUORUM
from tests.conftest import RABBITMQ_URL


def test_the_pattern_takes_the_tests_and_benchmarks_namespaces_and_nothing_else() -> None:
    matches = re.compile(PATTERN).match
    taken = ["test-0123456789ab.routing.commands", "bench-1a2b3c4d.edge.fraud.hangups.dead"]
    taken += ["bench-b2bua-one.routing.commands"]
    left = ["callmesh.routing.commands", "test.routing.commands", "amq.gen-abc", "tests-1.x"]
    left += ["production-test-0123456789ab.routing.commands", "test-lab.routing.commands"]
    left += ["test-0123456789abc.routing.commands"]
    assert [name for name in taken + left if matches(name)] == taken


def test_a_broker_elsewhere_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "amqp://guest:guest@rabbit.example.net:5672/"]) == 0
    assert "rabbit.example.net is not this machine's" in capsys.readouterr().out


async def _hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that only holds its queue."""


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    for _ in range(int(within / 0.5)):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not so within {within:g} s")


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        yield await connection.channel()


@pytest.mark.integration
async def test_unused_leftovers_go_and_a_used_queue_or_another_name_stays(
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    run = uuid.uuid4().hex[:12]
    pattern, policy = rf"^test-{run}\.", f"callmesh-test-{run}"
    left = await channel.declare_queue(f"test-{run}.left", durable=True, arguments=QUORUM)
    busy = await channel.declare_queue(f"test-{run}.busy", durable=True, arguments=QUORUM)
    other = await channel.declare_queue(f"keep-{run}.other", durable=True)
    await busy.consume(_hold)
    broker = Broker(RABBITMQ_URL)
    try:  # a quorum queue's consumer count is its leader's, reported at its next tick
        await _until(lambda: broker.unused(pattern) == [f"test-{run}.left"])
        line = await asyncio.to_thread(sweep, broker, pattern, policy)
        assert line.startswith("RabbitMQ: 1 leftover test queue(s) removed")
        names = broker.run("list_queues", "--no-table-headers", "name", "policy")
        listed = dict(row.split("\t") for row in names.splitlines() if run in row)
        assert listed.keys() == {f"test-{run}.busy", f"keep-{run}.other"}
        assert listed[f"keep-{run}.other"] == ""
        # Under `make test` the machine-wide policy matches it too, at the same priority:
        # the broker applies either (seen both ways).
        assert listed[f"test-{run}.busy"] in {policy, POLICY}
        policies = broker.run("list_policies", "--no-table-headers").splitlines()
        rows = [row.split("\t")[1:5] for row in policies if policy in row]
        assert rows == [[policy, pattern, "queues", '{"expires":600000}']]
        assert left.name not in names
    finally:
        broker.run("clear_policy", policy)
        await channel.queue_delete(busy.name)
        await channel.queue_delete(other.name)


@pytest.mark.integration
@pytest.mark.lab
def test_a_broker_wedged_by_more_queues_than_file_handles_is_revived() -> None:
    """Its own node: 60 test queues, then a budget of 40 handles. A new connection gets no
    answer (the broker as CI found it); the sweep revives it, removes the unused test queues
    and puts the budget back, and the broker answers again."""
    with rabbit_cluster(size=1) as cluster:
        node = cluster.nodes[0]
        broker = Broker(node.url, (CTL, "-n", node.name), cluster.env())

        async def declare() -> None:
            connection = await aio_pika.connect(node.url)
            async with connection:
                channel = await connection.channel()
                for n in range(60):
                    await channel.declare_queue(f"test-{n:012x}.q", durable=True, arguments=QUORUM)

        asyncio.run(declare())
        budget = broker.eval("file_handle_cache:get_limit().")
        broker.eval("file_handle_cache:set_limit(40).")
        assert not broker.answers(within=5.0)
        line = sweep(broker)
        revived = r"RabbitMQ: revived \(its 60 queues held \d+ file handles of 40\); 60 leftover"
        assert re.match(revived, line), line
        assert broker.answers()
        assert broker.eval("length(rabbit_amqqueue:list()).") == "0"
        assert broker.eval("file_handle_cache:get_limit().") == "40"
        broker.eval(f"file_handle_cache:set_limit({budget}).")
