"""Keepalives on local sockets: a phone that answers stays, a silent one is reported.

The edge's real sockets on loopback and a UDP "phone" beside them; the
binding's Contact is private (behind NAT) and its ``received`` the phone's
socket. The report goes to the registrar's work queue on the in-memory bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.edge import metrics
from services.edge.keepalive.ping import ping_call_id
from services.edge.keepalive.schedule import KeepaliveSchedule
from services.edge.runtime.keepalives import KeepaliveRunner
from services.edge.runtime.sockets import EdgeSockets
from services.edge.runtime.startup import interfaces_of
from shared.bus import WorkMessage
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.registrar import UNREACHABLE_QUEUE, UnreachableBinding
from shared.registrar.model import Location
from shared.settings import ListenAddress
from shared.sip.message import Request, parse_message
from shared.sip.responses import make_response
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.shared.bus.support import until

EDGE = "edge-a"


class Phone(asyncio.DatagramProtocol):
    """Answers every OPTIONS with ``status`` while ``answering``; counts what it got."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.answering = True
        self.received = 0
        self.eight = asyncio.Event()
        """Set at the eighth ping: past twice the timeout at the test's interval."""
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        if self.received == 8:
            self.eight.set()
        request = parse_message(data)
        if self.answering and isinstance(request, Request) and self.transport is not None:
            self.transport.sendto(make_response(request, self.status).to_bytes(), addr)


@dataclass
class Setup:
    runner: KeepaliveRunner
    phone: Phone
    reports: asyncio.Queue[UnreachableBinding]
    binding: Location


async def edge_and_registrar() -> tuple[MemoryBus, MemoryBus, asyncio.Queue[UnreachableBinding]]:
    """The edge's bus and the registrar's on one in-memory broker, and the reports it takes."""
    broker = MemoryBroker()
    bus, registrar = MemoryBus(broker, "t", "edge", EDGE), MemoryBus(broker, "t", "registrar", "r")
    await bus.start()
    await registrar.start()
    reports: asyncio.Queue[UnreachableBinding] = asyncio.Queue()

    async def take(message: WorkMessage) -> None:
        reports.put_nowait(UnreachableBinding.model_validate_json(message.body))

    await registrar.consume(UNREACHABLE_QUEUE, take)
    return bus, registrar, reports


@pytest.fixture(params=[200, 404])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    loop = asyncio.get_running_loop()
    runner: KeepaliveRunner | None = None

    def deliver(data: bytes, source: Destination, _listener: Listener, _at: float | None) -> None:
        assert runner is not None
        assert runner.claims(data, source), data  # only answers to our pings come here

    sockets = EdgeSockets(deliver)
    await sockets.open([ListenAddress("udp", "127.0.0.1", 0)], shared=False)
    phone = Phone(request.param)
    transport, _ = await loop.create_datagram_endpoint(lambda: phone, ("127.0.0.1", 0))
    phone.transport = transport
    port = transport.get_extra_info("sockname")[1]
    bus, registrar, reports = await edge_and_registrar()
    schedule = KeepaliveSchedule(interval=0.1, timeout=0.35)
    runner = KeepaliveRunner(schedule, bus, sockets, interfaces_of(sockets.bound, None), EDGE)
    await runner.start()
    binding = Location(
        aor="sip:alice@example.com",
        contact="sip:alice@192.168.1.5:5060",
        expires_at=time.time() + 3600,
        received=f"sip:127.0.0.1:{port}",
        transport="udp",
        edge=EDGE,
    )
    yield Setup(runner, phone, reports, binding)
    await runner.stop()
    transport.close()
    await sockets.close()
    await registrar.close()
    await bus.close()


async def test_an_answering_phone_is_pinged_and_kept(setup: Setup) -> None:
    """Any answer counts, a 404 as well as a 200; pings and answers are counted."""
    sent, answers = metrics.KEEPALIVES_SENT["options"], metrics.KEEPALIVE_ANSWERS.value
    setup.runner.note(setup.binding, gone=False)
    await asyncio.wait_for(setup.phone.eight.wait(), 5)
    await until(lambda: metrics.KEEPALIVE_ANSWERS.value >= answers + 8)
    assert setup.reports.empty()
    assert len(setup.runner.schedule) == 1
    assert metrics.KEEPALIVES_SENT["options"] >= sent + 8
    assert metrics.KEEPALIVES_WATCHED.value == 1


async def test_a_silent_phone_is_reported_once(setup: Setup) -> None:
    setup.phone.answering = False
    loop = asyncio.get_running_loop()
    noted_at = loop.time()
    removals, answers = metrics.KEEPALIVE_REMOVALS.value, metrics.KEEPALIVE_ANSWERS.value
    setup.runner.note(setup.binding, gone=False)
    report = await asyncio.wait_for(setup.reports.get(), 5)
    assert metrics.KEEPALIVE_REMOVALS.value == removals + 1
    assert metrics.KEEPALIVE_ANSWERS.value == answers
    assert loop.time() - noted_at >= setup.runner.schedule.timeout  # not before its timeout
    assert (report.aor, report.contact, report.received, report.edge, report.expires_at) == (
        setup.binding.aor,
        setup.binding.contact,
        setup.binding.received,
        EDGE,
        setup.binding.expires_at,
    )
    pinged = setup.phone.received
    assert pinged >= 1  # (how many fit in the timeout depends on how busy the machine is)
    await asyncio.sleep(0.3)
    assert setup.phone.received == pinged and setup.reports.empty()  # no more pings


async def test_bindings_of_other_edges_and_removed_ones_are_not_pinged(setup: Setup) -> None:
    setup.runner.note(setup.binding.model_copy(update={"edge": "edge-b"}), gone=False)
    assert len(setup.runner.schedule) == 0
    setup.runner.note(setup.binding, gone=False)
    setup.runner.note(setup.binding, gone=True)
    await asyncio.sleep(0.3)
    assert setup.phone.received == 0 and len(setup.runner.schedule) == 0


async def test_only_answers_to_our_pings_are_taken(setup: Setup) -> None:
    setup.runner.note(setup.binding, gone=False)
    stray = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: cm-ka-0000\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    phone = Destination("udp", "127.0.0.1", int(setup.binding.received.rsplit(":", 1)[1]))
    assert not setup.runner.claims(stray, phone)  # our mark, not one of our bindings
    assert not setup.runner.claims(stray.replace(b"cm-ka-0000", b"elsewhere"), phone)
    assert not setup.runner.claims(b"OPTIONS sip:a@x SIP/2.0\r\n\r\n", phone)


@pytest.mark.parametrize(
    "call_id", [b"", b"Call-ID: \r\n", b"Call-ID: a b\r\n"], ids=["missing", "empty", "two"]
)
async def test_an_answer_with_a_bad_call_id_is_left_to_the_core(
    setup: Setup, call_id: bytes
) -> None:
    """Our mark elsewhere in a response without a usable Call-ID: not ours, and no exception
    out of the socket's callback (a traceback per datagram)."""
    setup.runner.note(setup.binding, gone=False)
    phone = Destination("udp", "127.0.0.1", int(setup.binding.received.rsplit(":", 1)[1]))
    data = b"SIP/2.0 200 OK\r\n" + call_id + b"Subject: cm-ka-\r\nContent-Length: 0\r\n\r\n"
    assert not setup.runner.claims(data, phone)


async def test_a_forged_answer_from_elsewhere_keeps_no_binding(setup: Setup) -> None:
    """The ping's Call-ID is computable from the AoR and Contact: a stranger sending a 200
    with it (not from the phone's flow) neither is taken nor keeps a silent binding alive."""
    setup.phone.answering = False
    setup.runner.note(setup.binding, gone=False)
    call_id = ping_call_id(setup.binding.aor, setup.binding.contact).encode()
    forged = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: " + call_id + b".1\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    stranger = Destination("udp", "127.0.0.1", 9)
    deadline = time.monotonic() + 5
    while setup.reports.empty() and time.monotonic() < deadline:
        assert not setup.runner.claims(forged, stranger)
        await asyncio.sleep(0.02)
    assert not setup.reports.empty()  # reported although "answered" every 20 ms


@pytest.mark.parametrize("params", [";reg-id=1", ""], ids=["crlf", "options"])
async def test_a_connection_binding_whose_connection_is_gone_gets_no_new_one(
    setup: Setup, params: str
) -> None:
    """A connection's flow ends with it (RFC 5626): the edge does not open a new connection
    to the address the phone once came from (someone else may listen there now, and the
    write would count as the phone's answer), it reports the binding unreachable."""
    accepted: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    binding = setup.binding.model_copy(
        update={
            "received": f"sip:127.0.0.1:{port};transport=tcp",
            "transport": "tcp",
            "params": params,
            "connection_id": 7,
        }
    )
    kind = "crlf" if params else "options"
    failures, sent = metrics.KEEPALIVE_FAILURES[kind], metrics.KEEPALIVES_SENT[kind]
    try:
        setup.runner.note(binding, gone=False)
        report = await asyncio.wait_for(setup.reports.get(), 5)
        assert report.contact == binding.contact
        assert accepted == []
        assert metrics.KEEPALIVE_FAILURES[kind] > failures  # each ping that could not go
        assert metrics.KEEPALIVES_SENT[kind] == sent
    finally:
        listener.close()
        await listener.wait_closed()


async def outbound_phone(
    setup: Setup,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Location]:
    """A phone connected to the edge over TCP, and its outbound (``reg-id``) binding."""
    sockets = setup.runner.sockets
    tcp = [bound.listener for bound in sockets.bound if bound.listener.transport == "tcp"]
    if not tcp:
        await sockets.open([ListenAddress("tcp", "127.0.0.1", 0)], shared=False)
        tcp = [sockets.bound[-1].listener]
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp[0].port)
    port = writer.get_extra_info("sockname")[1]
    peer = Destination("tcp", "127.0.0.1", port)
    await until(lambda: sockets.tcp.connection(peer) is not None)
    connection = sockets.tcp.connection(peer)
    assert connection is not None
    binding = setup.binding.model_copy(
        update={
            "contact": f"sip:alice@192.168.1.5:{port};transport=tcp",
            "received": f"sip:127.0.0.1:{port};transport=tcp",
            "transport": "tcp",
            "params": ";reg-id=1",
            "connection_id": connection.id,
        }
    )
    return reader, writer, binding


async def ponging(reader: asyncio.StreamReader, writers: list[asyncio.StreamWriter]) -> int:
    """Read the CRLF pings on ``reader``'s connection, each answered by a pong on ``writers[0]``
    (the same connection, or another); returns the pings read when the connection ends."""
    pings = 0
    while await reader.read(4) == b"\r\n\r\n":
        pings += 1
        writers[0].write(b"\r\n")
    return pings


async def test_a_connection_binding_is_pinged_on_its_connection_and_kept_by_its_pongs(
    setup: Setup,
) -> None:
    """Outbound (``reg-id``): CRLFs on the phone's own connection; its pongs keep it."""
    reader, writer, binding = await outbound_phone(setup)
    sent, answers = metrics.KEEPALIVES_SENT["crlf"], metrics.KEEPALIVE_ANSWERS.value
    pongs = asyncio.ensure_future(ponging(reader, [writer]))
    setup.runner.note(binding, gone=False)
    await asyncio.sleep(1.0)  # the timeout (0.35 s) thrice over
    assert setup.reports.empty()
    assert metrics.KEEPALIVES_SENT["crlf"] >= sent + 8
    assert metrics.KEEPALIVE_ANSWERS.value >= answers + 8
    writer.close()
    assert await asyncio.wait_for(pongs, 5) >= 8


async def test_a_connection_binding_whose_pongs_stop_is_reported(setup: Setup) -> None:
    """The connection stays open and takes the pings (the write succeeds), but no pong comes:
    a phone gone without closing it.  Reported once the timeout passes, and no sooner."""
    reader, writer, binding = await outbound_phone(setup)
    setup.runner.note(binding, gone=False)
    noted = time.monotonic()
    report = await asyncio.wait_for(setup.reports.get(), 5)
    assert report.contact == binding.contact
    assert time.monotonic() - noted >= 0.35 - 0.1  # the timeout, less one interval
    assert await reader.read(4) == b"\r\n\r\n"  # it was pinged all along
    writer.close()


async def test_a_pong_on_another_connection_answers_nothing(setup: Setup) -> None:
    """The phone's pongs count on its own connection only: the same pongs on a second
    connection (another phone, or someone who guessed) leave the binding unanswered."""
    reader, writer, binding = await outbound_phone(setup)
    _, elsewhere, _ = await outbound_phone(setup)
    answers = metrics.KEEPALIVE_ANSWERS.value
    pongs = asyncio.ensure_future(ponging(reader, [elsewhere]))
    setup.runner.note(binding, gone=False)
    report = await asyncio.wait_for(setup.reports.get(), 5)
    assert report.contact == binding.contact
    assert metrics.KEEPALIVE_ANSWERS.value == answers
    writer.close()
    elsewhere.close()
    assert await asyncio.wait_for(pongs, 5) >= 2


async def test_a_late_pong_answers_nothing_and_the_ping_is_counted_missed(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pong later than RFC 5626's 10 s (scaled down here) is a failed ping.

    Each pong comes 60 ms after the ping it answers, three times the 20 ms window. It would
    count only if the next ping (100 ms on) left within the window before it, which takes
    the test's read of a ping to lag 40-60 ms behind its sending (a CI run: with a 50 ms
    window and 80 ms pongs, a lag of 20-70 ms was enough)."""
    monkeypatch.setattr("services.edge.runtime.keepalives.PONG_WINDOW", 0.02)
    reader, writer, binding = await outbound_phone(setup)
    missed, answers = metrics.KEEPALIVE_PONGS_MISSED.value, metrics.KEEPALIVE_ANSWERS.value

    async def late() -> None:
        while await reader.read(4) == b"\r\n\r\n":
            await asyncio.sleep(0.06)
            writer.write(b"\r\n")

    pongs = asyncio.ensure_future(late())
    setup.runner.note(binding, gone=False)
    report = await asyncio.wait_for(setup.reports.get(), 5)
    assert report.contact == binding.contact
    assert metrics.KEEPALIVE_ANSWERS.value == answers
    assert metrics.KEEPALIVE_PONGS_MISSED.value >= missed + 1
    writer.close()
    pongs.cancel()


async def test_a_failed_round_does_not_end_the_keepalives(
    setup: Setup, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault in one round is one log line (no traceback); the next rounds ping as before."""
    schedule = setup.runner.schedule
    tick, failures = schedule.tick, [RuntimeError("planted")]

    def failing_once(now: float) -> Any:
        if failures:
            raise failures.pop()
        return tick(now)

    monkeypatch.setattr(schedule, "tick", failing_once)
    monkeypatch.setattr("services.edge.runtime.keepalives.FAILED_ROUND_PAUSE", 0.05)
    setup.runner.note(setup.binding, gone=False)
    await asyncio.wait_for(setup.phone.eight.wait(), 5)
    failed = [r for r in caplog.records if "keepalive round failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None
    assert "planted" in failed[0].getMessage()
    assert setup.reports.empty()
