"""Handing a shared port's messages to the worker that owns their Call-ID."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from services.edge.runtime.affinity import (
    CallAffinity,
    Deliver,
    WorkerGroup,
    connection_ids,
    connection_owner,
    pack,
    pack_stream,
    unpack,
    unpack_stream,
)
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.shared.bus.support import until

CALL_ID = b"a84b4c76e66710@pc33"
INVITE = (
    b"INVITE sip:14075550001@edge SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a84b4c76e66710@pc33\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_an_envelope_keeps_the_source_listener_and_receive_time() -> None:
    source = Destination("udp", "2001:db8::7", 5062)
    assert unpack(pack(3, source, INVITE, 81234.567891)) == (3, source, INVITE, 81234.567891)


def test_a_stream_envelope_keeps_the_connection_and_the_listener() -> None:
    source = Destination("tcp", "2001:db8::7", 51000, 64 * 9 + 3, reconnect_port=5060)
    listener = Listener("tcp", "::1", 5060)
    kind, got, local, data = unpack_stream(pack_stream(0x4000, source, listener, INVITE))
    assert (kind & 0x4000, got, local, data) == (0x4000, source, listener, INVITE)
    assert got.reconnect_port == 5060  # where a response goes if the connection is gone


def test_a_connection_id_names_the_worker_that_gave_it() -> None:
    for worker in (0, 1, 63):
        ids = connection_ids(worker)
        assert {connection_owner(next(ids)) for _ in range(100)} == {worker}


def test_a_flow_belongs_to_the_instance_of_the_worker_holding_its_connection() -> None:
    second = WorkerGroup(1, 3, Path("/nonexistent"))
    ids = connection_ids(2)
    held_by_third = Destination("ws", "192.0.2.1", 40000, next(ids))
    assert second.flow_instance("edge-a-w1", held_by_third) == "edge-a-w2"
    assert second.flow_instance("edge-a-w1", Destination("udp", "192.0.2.1", 5060)) == "edge-a-w1"
    first = WorkerGroup(0, 3, Path("/nonexistent"))
    assert first.flow_instance("edge-a", held_by_third) == "edge-a-w2"
    assert second.instance_of("edge-a-w1", 0) == "edge-a"


def test_a_message_for_another_workers_connection_is_written_there(tmp_path: Path) -> None:
    """A message on a connection goes to its Call-ID's owner; the owner's answer for that
    connection goes back to the worker holding it, to write."""
    listener = Listener("ws", "127.0.0.1", 8080)
    owner = WorkerGroup(0, 2, tmp_path).owner(CALL_ID)
    holder = 1 - owner
    connection = Destination("ws", "192.0.2.1", 40000, next(connection_ids(holder)))
    delivered: list[tuple[bytes, Destination, Listener, float | None]] = []
    written: list[tuple[bytes, Destination]] = []

    async def scenario() -> tuple[bool, bool, bool]:
        workers = {
            index: CallAffinity(
                WorkerGroup(index, 2, tmp_path),
                [],
                lambda data, src, local, at: delivered.append((data, src, local, at)),
                write=lambda data, destination: written.append((data, destination)),
            )
            for index in (0, 1)
        }
        for worker in workers.values():
            await worker.start()
        handed = workers[holder].hand_on_stream(INVITE, connection, listener)
        kept = workers[owner].hand_on_stream(INVITE, connection, listener)
        written_there = workers[owner].hand_write(b"SIP/2.0 200 OK\r\n\r\n", connection)
        mine = workers[holder].hand_write(b"SIP/2.0 200 OK\r\n\r\n", connection)
        await until(lambda: len(delivered) == 1 and len(written) == 1)
        for worker in workers.values():
            worker.close()
        return handed and written_there, kept, mine

    assert asyncio.run(scenario()) == (True, False, False)
    assert delivered == [(INVITE, connection, listener, None)]  # a stream's: timed when handled
    assert written == [(b"SIP/2.0 200 OK\r\n\r\n", connection)]


def test_an_alias_is_known_to_the_siblings_until_its_own_connection_ends(tmp_path: Path) -> None:
    """RFC 5923: worker 1's connection serves an alias; worker 2's newer one takes it over,
    and worker 1's connection closing afterwards does not take the newer one away."""
    peer = ("192.0.2.9", 5061)
    older, newer = next(connection_ids(1)), next(connection_ids(2))

    async def scenario() -> list[dict[tuple[str, str, int], int]]:
        workers = [
            CallAffinity(WorkerGroup(index, 3, tmp_path), [], lambda *_: None) for index in range(3)
        ]
        for worker in workers:
            await worker.start()
        seen = []
        workers[1].announce_alias("tls", peer, older, True)
        await until(lambda: bool(workers[0].aliases))
        seen.append(dict(workers[0].aliases))
        workers[2].announce_alias("tls", peer, newer, True)
        await until(lambda: workers[0].aliases.get(("tls", *peer)) == newer)
        workers[1].announce_alias("tls", peer, older, False)  # the older one closed
        workers[1].announce_alias("tls", ("192.0.2.10", 5061), older, True)  # after it, in order
        await until(lambda: len(workers[0].aliases) == 2)
        seen.append(dict(workers[0].aliases))
        workers[2].announce_alias("tls", peer, newer, False)
        await until(lambda: len(workers[0].aliases) == 1)
        seen.append(dict(workers[0].aliases))
        for worker in workers:
            worker.close()
        return seen

    first, after_older_closed, after_newer_closed = asyncio.run(scenario())
    assert first == {("tls", *peer): older}
    assert after_older_closed[("tls", *peer)] == newer
    assert after_newer_closed == {("tls", "192.0.2.10", 5061): older}


def test_call_ids_spread_over_the_workers() -> None:
    group = WorkerGroup(0, 4, Path("/nonexistent"))
    owners = [group.owner(f"{n}-4242@192.0.2.1".encode()) for n in range(4000)]
    assert all(800 <= owners.count(worker) <= 1200 for worker in range(4))


def test_a_message_goes_to_its_owner_and_stays_when_the_owner_is_gone(tmp_path: Path) -> None:
    listeners = [Listener("udp", "127.0.0.1", 5060), Listener("udp", "::1", 5060)]
    received: dict[int, list[tuple[bytes, Destination, Listener, float | None]]] = {0: [], 1: []}
    source = Destination("udp", "192.0.2.1", 5060)
    owner = WorkerGroup(0, 2, tmp_path).owner(b"a84b4c76e66710@pc33")
    other = 1 - owner

    def recorder(index: int) -> Deliver:
        return lambda data, src, listener, at: received[index].append((data, src, listener, at))

    async def scenario() -> tuple[bool, bool, bool]:
        workers = {
            index: CallAffinity(WorkerGroup(index, 2, tmp_path), listeners, recorder(index))
            for index in (0, 1)
        }
        for worker in workers.values():
            await worker.start()
        handed = workers[other].hand_on(INVITE, source, 1, 5.25)
        kept = workers[owner].hand_on(INVITE, source, 1, 5.25)
        for nameless in (b"INVITE sip:x SIP/2.0\r\n\r\n", INVITE.replace(CALL_ID, b"")):
            assert not workers[other].hand_on(nameless, source, 1, 5.25)  # no Call-ID: stays
        await asyncio.sleep(0.05)
        workers[owner].close()
        handed_to_nobody = workers[other].hand_on(INVITE, source, 1, 5.25)
        workers[other].close()
        return handed, kept, handed_to_nobody

    unreachable = REGISTRY.get_sample_value("callmesh_edge_handed_on_unreachable_total") or 0.0
    handed, kept, handed_to_nobody = asyncio.run(scenario())
    assert (handed, kept, handed_to_nobody) == (True, False, False)
    assert REGISTRY.get_sample_value("callmesh_edge_handed_on_unreachable_total") == unreachable + 1
    assert received[owner] == [(INVITE, source, listeners[1], 5.25)]  # the kernel's time kept
    assert received[other] == []


def test_a_burst_larger_than_a_datagram_queue_arrives_whole(tmp_path: Path) -> None:
    """Unix datagram sockets queue 10 messages by default; the hand-on must not lose a burst."""
    listeners = [Listener("udp", "127.0.0.1", 5060)]
    received: list[bytes] = []
    source = Destination("udp", "192.0.2.1", 5060)
    owner = WorkerGroup(0, 2, tmp_path).owner(b"a84b4c76e66710@pc33")

    async def scenario() -> list[bool]:
        receiver = CallAffinity(
            WorkerGroup(owner, 2, tmp_path),
            listeners,
            lambda data, src, lst, at: received.append(data),
        )
        sender = CallAffinity(WorkerGroup(1 - owner, 2, tmp_path), listeners, lambda *_: None)
        await receiver.start()
        await sender.start()
        handed = [sender.hand_on(INVITE, source, 0, 1.0) for _ in range(200)]  # before any read
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
                lambda data, src, listener, at: received.append(listener),
                private[index],
            )
            for index in (0, 1)
        ]
        for worker in workers:
            await worker.start()
        handed = workers[1 - owner].hand_on(
            response, Destination("udp", "gw", 5060), 0, 1.0, private=True
        )
        await asyncio.sleep(0.05)
        for worker in workers:
            worker.close()
        return handed

    assert asyncio.run(scenario())
    assert received == private[owner]
