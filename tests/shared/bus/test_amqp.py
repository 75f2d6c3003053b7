"""What only the RabbitMQ bus has to survive: a cut connection and an unreachable broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shared.bus import BusUnavailable, WorkMessage
from shared.bus.amqp import AmqpBus
from tests.conftest import RABBITMQ_URL
from tests.netcut import NetCut
from tests.shared.bus.support import Inbox, Ping, until

pytestmark = pytest.mark.integration


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def close_connection_named(name: str) -> None:
    """Make the broker drop our connection, as a broker restart or a network cut would."""
    listing = await rabbitmqctl(
        "list_connections", "--no-table-headers", "pid", "client_properties"
    )
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{name}"}}' in line
    ]
    assert len(pids) == 1, listing
    await rabbitmqctl("close_connection", pids[0], "test cuts the connection")


@contextlib.asynccontextmanager
async def started(*buses: AmqpBus) -> AsyncIterator[None]:
    try:
        for bus in buses:
            await bus.start()
        yield
    finally:
        # Bounded, so that a step that hangs fails here, naming itself, not at pytest's timeout.
        async with asyncio.timeout(60):
            for bus in buses:
                await bus.close()
            for bus in buses:
                await bus.delete_topology()


def record_connected(bus: AmqpBus) -> tuple[list[bool], asyncio.Task[None]]:
    """Every change of ``bus.connected``, watched from outside as ``/readyz`` would."""
    states = [bus.connected]

    async def watch() -> None:
        while True:
            if bus.connected != states[-1]:
                states.append(bus.connected)
            await asyncio.sleep(0.002)

    return states, asyncio.create_task(watch())


async def test_a_cut_connection_is_restored_with_everything_on_it(namespace: str) -> None:
    bus = AmqpBus(RABBITMQ_URL, namespace, "victim", "i1", backoff=(0.2, 1.0))
    peer = AmqpBus(RABBITMQ_URL, namespace, "peer", "i1")
    async with started(bus, peer):
        broadcast, grouped, jobs = Inbox(), Inbox(), Inbox()
        await bus.subscribe(["test.ping"], broadcast)
        await bus.subscribe(["test.#"], grouped, group="resync")

        async def job(message: WorkMessage) -> None:
            await jobs(message.body)

        async def echo(message: WorkMessage) -> bytes:
            return message.body

        await bus.consume("jobs", job)
        await peer.consume("echo", echo)
        resyncs: list[bool] = []

        async def resync() -> None:
            resyncs.append(bus.connected)

        bus.on_reconnect(resync)
        await peer.publish(Ping(n=1))
        await until(lambda: len(broadcast.items) == len(grouped.items) == 1)
        states, watcher = record_connected(bus)

        await close_connection_named(bus.connection_name)
        await until(lambda: resyncs == [True])

        watcher.cancel()
        if bus.connected != states[-1]:
            states.append(bus.connected)
        assert states == [True, False, True]
        await peer.publish(Ping(n=2))
        await peer.send("jobs", b"after the cut")
        await until(lambda: len(broadcast.items) == len(grouped.items) == 2)
        await until(lambda: jobs.items == [b"after the cut"])
        assert [envelope.payload(Ping).n for envelope in broadcast.items] == [1, 2]
        assert await bus.request("echo", b"still there?") == b"still there?"
        await bus.publish(Ping(n=3))  # and it can publish again
        await until(lambda: len(grouped.items) == 3)


async def test_a_request_in_flight_fails_at_once_when_its_connection_is_cut(
    namespace: str,
) -> None:
    """Its reply could only come back on the lost connection: waiting out the timeout is waste."""
    bus = AmqpBus(RABBITMQ_URL, namespace, "victim", "i1", backoff=(0.2, 1.0))
    peer = AmqpBus(RABBITMQ_URL, namespace, "peer", "i1")
    arrived, release = asyncio.Event(), asyncio.Event()

    async def stall(message: WorkMessage) -> bytes:
        arrived.set()
        await release.wait()
        return message.body

    async with started(bus, peer):
        await peer.consume("stall", stall)
        request = asyncio.create_task(bus.request("stall", b"anyone?", timeout=60))
        await asyncio.wait_for(arrived.wait(), 10)

        async with asyncio.timeout(30):
            await close_connection_named(bus.connection_name)
        try:
            with pytest.raises(BusUnavailable, match="connection lost"):
                await asyncio.wait_for(asyncio.shield(request), 10)
        finally:
            request.cancel()
            release.set()


async def test_close_ends_a_bus_whose_cancel_lands_as_its_lost_connection_finishes_closing(
    namespace: str,
) -> None:
    """On Python 3.11 `asyncio.wait_for` returns its result instead of raising when a cancel
    lands just as what it waits for finishes.  The supervisor, closing a lost connection,
    lost `close`'s cancel there, connected again and waited on that connection forever, and
    `close` with it: the teardown hang a CI run showed after a connection was cut."""
    bus = AmqpBus(RABBITMQ_URL, namespace, "victim", "i1", backoff=(0.2, 1.0))
    async with started(bus):
        link = bus._link
        assert link is not None
        close_connection = link.connection.close
        closing: list[asyncio.Task[None]] = []

        async def close_then_close_the_bus(*_: object) -> None:
            await close_connection()
            closing.append(asyncio.create_task(bus.close()))  # its cancel: as this returns

        link.connection.close = close_then_close_the_bus  # type: ignore[method-assign,assignment]
        link.lose("the test cuts the link")
        await until(lambda: bool(closing))
        async with asyncio.timeout(10):
            await closing[0]
        assert not bus.connected
        await asyncio.sleep(0.5)  # past the backoff: nothing connects behind close's back
        assert bus._link is None


async def test_publish_waits_for_the_broker_then_gives_up_clearly(namespace: str) -> None:
    cut = await NetCut("127.0.0.1", 5672).start()
    url = f"amqp://guest:guest@127.0.0.1:{cut.port}/"
    bus = AmqpBus(url, namespace, "victim", "i1", wait=0.5, backoff=(0.05, 0.2))
    try:
        async with started(bus):
            inbox = Inbox()
            await bus.subscribe(["test.ping"], inbox)
            cut.cut()
            await until(lambda: not bus.connected)

            with pytest.raises(BusUnavailable, match="unreachable"):
                await bus.publish(Ping(n=1))
            with pytest.raises(BusUnavailable, match="unreachable"):
                await bus.publish_many([Ping(n=1), Ping(n=1)])

            cut.restore()
            await until(lambda: bus.connected)
            await bus.publish(Ping(n=2))
            await bus.publish_many([Ping(n=3), Ping(n=4)])
            await until(lambda: len(inbox.items) == 3)
            assert [item.payload(Ping).n for item in inbox.items] == [2, 3, 4]
    finally:
        await cut.close()


async def test_start_gives_up_clearly_when_the_broker_never_answers(namespace: str) -> None:
    cut = await NetCut("127.0.0.1", 5672).start()
    cut.cut()
    bus = AmqpBus(
        f"amqp://guest:guest@127.0.0.1:{cut.port}/", namespace, "lonely", "i1", start_timeout=0.3
    )
    try:
        with pytest.raises(BusUnavailable, match="unreachable") as raised:
            await bus.start()
        assert not bus.connected
        # Why it gave up is said, without the URL's password.
        assert "; last try: " in str(raised.value)
        assert "guest" not in str(raised.value)
    finally:
        await cut.close()


def test_connection_is_named_after_namespace_and_stream() -> None:
    """Operators (and the cut test) find a service's connection by this name."""
    bus = AmqpBus(RABBITMQ_URL, "prod", "routing", "host-1")
    assert bus.connection_name == "callmesh prod routing/host-1"


async def test_work_queues_are_quorum_queues_and_a_classic_one_from_before_is_kept(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment from before quorum queues has its work queues as classic queues, which
    RabbitMQ refuses to redeclare with another type: the bus keeps using them (one warning
    naming the migration) and its connection stays up; new queues are quorum queues."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(f"{namespace}.old", durable=True)
    bus = AmqpBus(RABBITMQ_URL, namespace, "routing", "r1")
    inbox = Inbox()
    async with started(bus):
        await bus.consume("old", inbox)
        await bus.declare_queue("new")
        await bus.send("old", b"still served", message_id="m-1")
        await until(lambda: len(inbox.items) == 1)
        assert isinstance(inbox.items[0], WorkMessage)
        assert (inbox.items[0].body, inbox.items[0].message_id) == (b"still served", "m-1")
        assert bus.connected
        types = await rabbitmqctl("list_queues", "--no-table-headers", "name", "type")
        found = dict(line.split("\t") for line in types.splitlines() if namespace in line)
    assert found == {
        f"{namespace}.old": "classic",
        f"{namespace}.old.dead": "quorum",
        f"{namespace}.new": "quorum",
        f"{namespace}.new.dead": "quorum",
    }
    assert f"queue {namespace}.old is a classic queue" in caplog.text
    assert "python -m deploy.quorum_queues" in caplog.text
