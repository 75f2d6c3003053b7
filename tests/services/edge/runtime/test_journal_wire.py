"""A real edge SIGKILLed with call events it could not get confirmed: the edge started again on
the same outbox directory publishes every one of them, once.

The edge reaches RabbitMQ through a forwarder (`tests.netcut`) that, once held, swallows what
the edge sends: its publishes are never confirmed, so the call events of the calls made then
wait in its backlog or in flight when it is killed, exactly what the fault drill lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import pytest

from deploy.labs.ports import free_port
from shared.bus.base import Envelope
from tests.conftest import RABBITMQ_URL
from tests.netcut import NetCut
from tests.services.edge.support import Edge, running_edge, sipp, wait_bound
from tests.services.edge.test_call_events_wire import CallEventQueue, unbatched

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 5
KINDS = {f"edge.call.{kind}" for kind in ("started", "branch", "ringing", "answered", "ended")}
"""A call the caller hangs up."""
EVENTS_PER_CALL = len(KINDS)


@contextmanager
def forwarder_to_rabbitmq() -> Iterator[NetCut]:
    """A `NetCut` to the test broker, served by a loop of its own beside the test's processes."""
    target = urlsplit(RABBITMQ_URL)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    netcut = NetCut(target.hostname or "127.0.0.1", target.port or 5672)
    asyncio.run_coroutine_threadsafe(netcut.start(), loop).result(10)
    try:
        yield netcut
    finally:
        asyncio.run_coroutine_threadsafe(netcut.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def metric(edge: Edge, name: str) -> float | None:
    with edge.http() as client:
        for line in client.get("/metrics").text.splitlines():
            found, _, value = line.partition(" ")
            if found == name:
                return float(value)
    return None


def drain(queue: CallEventQueue) -> list[Envelope]:
    """Every event left on the queue (batches read as their events)."""

    async def take() -> list[Envelope]:
        found: list[Envelope] = []
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            source = await channel.get_queue(queue.name)
            while (message := await source.get(fail=False)) is not None:
                await message.ack()
                found.extend(unbatched(Envelope.from_bytes(message.body)))
        return found

    return asyncio.run(take())


@pytest.mark.parametrize("slot", ["own", "orphaned"])
def test_the_call_events_of_an_edge_killed_before_the_broker_confirmed_go_out_once(
    tmp_path: Path, slot: str
) -> None:
    """``orphaned``: the killed worker's slot is one no worker of the restarted edge claims
    (as after a restart with fewer workers): the edge's first process adopts it."""
    outbox = tmp_path / "outbox"
    with (
        forwarder_to_rabbitmq() as netcut,
        running_edge(
            tmp_path,
            rabbitmq_url=RABBITMQ_URL.replace(f":{urlsplit(RABBITMQ_URL).port}", f":{netcut.port}"),
            edge_outbox_dir=str(outbox),
        ) as edge,
    ):
        events = CallEventQueue(edge.namespace)
        try:
            port = free_port()
            edge.route({"ob1": port}, {"ob1": ("1801", ["ob1"])})
            gateway = sipp(tmp_path, "gateway", port, calls=CALLS)
            wait_bound(port)
            netcut.hold()  # from now on nothing the edge publishes is confirmed
            caller = sipp(
                tmp_path,
                "caller",
                free_port(),
                remote=edge.sip_port,
                calls=CALLS,
                args=("-s", "18015550001", "-set", "hold", "0"),
            )
            assert caller.wait() == 0, caller.errors() + edge.log()
            assert gateway.wait() == 0
            # Every event is made by now (the last, as the BYE's 200 went back): not one out.
            edge.kill()
            assert drain(events) == []
            if slot == "orphaned":
                [kept] = (outbox / edge.namespace).glob("worker-*")
                kept.rename(kept.with_name("worker-9"))

            edge.env["CALLMESH_RABBITMQ_URL"] = RABBITMQ_URL
            edge.start()
            found = events.read_until(lambda got: len(got) >= CALLS * EVENTS_PER_CALL)
            deadline = time.monotonic() + 10
            while metric(edge, "callmesh_edge_outbox_unsettled") != 0:
                assert time.monotonic() < deadline, "the outbox never emptied"
                time.sleep(0.05)
            found += drain(events)  # confirmed, so on the queue: a second copy would be here
        finally:
            events.delete()
    by_call: dict[str, set[str]] = {}
    for envelope in found:
        by_call.setdefault(envelope.data["call_id"], set()).add(envelope.type)
    assert len(found) == CALLS * EVENTS_PER_CALL, [envelope.type for envelope in found]
    assert len(by_call) == CALLS
    assert all(kinds == KINDS for kinds in by_call.values())  # so none came twice
