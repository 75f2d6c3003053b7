"""Handing a shared port's messages to the worker that owns their Call-ID."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from services.edge.runtime.affinity import CallAffinity, WorkerGroup, pack, unpack
from shared.sip.transport.base import Listener, MessageHandler
from shared.sip.transport.destination import Destination

CALL_ID = b"a84b4c76e66710@pc33"
INVITE = (
    b"INVITE sip:14075550001@edge SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a84b4c76e66710@pc33\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_an_envelope_keeps_the_source_and_listener() -> None:
    source = Destination("udp", "2001:db8::7", 5062)
    assert unpack(pack(3, source, INVITE)) == (3, source, INVITE)


def test_call_ids_spread_over_the_workers() -> None:
    group = WorkerGroup(0, 4, Path("/nonexistent"))
    owners = [group.owner(f"{n}-4242@192.0.2.1".encode()) for n in range(4000)]
    assert all(800 <= owners.count(worker) <= 1200 for worker in range(4))


def test_a_message_goes_to_its_owner_and_stays_when_the_owner_is_gone(tmp_path: Path) -> None:
    listeners = [Listener("udp", "127.0.0.1", 5060), Listener("udp", "::1", 5060)]
    received: dict[int, list[tuple[bytes, Destination, Listener]]] = {0: [], 1: []}
    source = Destination("udp", "192.0.2.1", 5060)
    owner = WorkerGroup(0, 2, tmp_path).owner(b"a84b4c76e66710@pc33")
    other = 1 - owner

    def recorder(index: int) -> MessageHandler:
        return lambda data, src, listener: received[index].append((data, src, listener))

    async def scenario() -> tuple[bool, bool, bool]:
        workers = {
            index: CallAffinity(WorkerGroup(index, 2, tmp_path), listeners, recorder(index))
            for index in (0, 1)
        }
        for worker in workers.values():
            await worker.start()
        handed = workers[other].hand_on(INVITE, source, 1)
        kept = workers[owner].hand_on(INVITE, source, 1)
        for nameless in (b"INVITE sip:x SIP/2.0\r\n\r\n", INVITE.replace(CALL_ID, b"")):
            assert not workers[other].hand_on(nameless, source, 1)  # no Call-ID: stays
        await asyncio.sleep(0.05)
        workers[owner].close()
        handed_to_nobody = workers[other].hand_on(INVITE, source, 1)
        workers[other].close()
        return handed, kept, handed_to_nobody

    unreachable = REGISTRY.get_sample_value("callmesh_edge_handed_on_unreachable_total") or 0.0
    handed, kept, handed_to_nobody = asyncio.run(scenario())
    assert (handed, kept, handed_to_nobody) == (True, False, False)
    assert REGISTRY.get_sample_value("callmesh_edge_handed_on_unreachable_total") == unreachable + 1
    assert received[owner] == [(INVITE, source, listeners[1])]
    assert received[other] == []


def test_a_burst_larger_than_a_datagram_queue_arrives_whole(tmp_path: Path) -> None:
    """Unix datagram sockets queue 10 messages by default; the hand-on must not lose a burst."""
    listeners = [Listener("udp", "127.0.0.1", 5060)]
    received: list[bytes] = []
    source = Destination("udp", "192.0.2.1", 5060)
    owner = WorkerGroup(0, 2, tmp_path).owner(b"a84b4c76e66710@pc33")

    async def scenario() -> list[bool]:
        receiver = CallAffinity(
            WorkerGroup(owner, 2, tmp_path), listeners, lambda data, src, lst: received.append(data)
        )
        sender = CallAffinity(WorkerGroup(1 - owner, 2, tmp_path), listeners, lambda *_: None)
        await receiver.start()
        await sender.start()
        handed = [sender.hand_on(INVITE, source, 0) for _ in range(200)]  # before any read
        for _ in range(100):
            if len(received) == 200:
                break
            await asyncio.sleep(0.01)
        sender.close()
        receiver.close()
        return handed

    assert all(asyncio.run(scenario()))
    assert len(received) == 200


def test_a_misdirected_response_reaches_the_owners_private_port(tmp_path: Path) -> None:
    shared = [Listener("udp", "127.0.0.1", 5060)]
    private = {0: [Listener("udp", "127.0.0.1", 40000)], 1: [Listener("udp", "127.0.0.1", 40001)]}
    received: list[Listener] = []
    response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKx\r\n"
        + (INVITE[INVITE.index(b"Call-ID") :])
    )
    owner = WorkerGroup(0, 2, tmp_path).owner(b"a84b4c76e66710@pc33")

    async def scenario() -> bool:
        workers = [
            CallAffinity(
                WorkerGroup(index, 2, tmp_path),
                shared,
                lambda data, src, listener: received.append(listener),
                private[index],
            )
            for index in (0, 1)
        ]
        for worker in workers:
            await worker.start()
        handed = workers[1 - owner].hand_on(
            response, Destination("udp", "gw", 5060), 0, private=True
        )
        await asyncio.sleep(0.05)
        for worker in workers:
            worker.close()
        return handed

    assert asyncio.run(scenario())
    assert received == private[owner]
