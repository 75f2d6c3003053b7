"""One process's start-up (`start_edge`, what the service and every worker run) and its helpers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from deploy.labs.ports import free_port
from services.edge.runtime.sockets import BoundSocket
from services.edge.runtime.startup import interfaces_of, parse_advertise, start_edge
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.settings import Settings
from shared.sip.transport.base import Listener
from shared.store import open_store
from tests.services.edge.support import LOOPBACK, options


async def test_one_process_edge_serves_sip_and_stops(tmp_path: Path) -> None:
    """On the in-memory bus and the embedded store: the routing cache loaded, an OPTIONS to
    the edge answered on the port it bound, and the port free again once stopped; its load
    shedder and its sockets' rest after a burst as the settings say (a second OPTIONS, most
    likely sent while the socket rests, answered)."""
    port = free_port()
    settings = Settings(
        sip_listen=f"udp:{LOOPBACK}:{port}",
        data_dir=str(tmp_path),
        redis_url=None,
        rabbitmq_url=None,
        overload_event_backlog_percent=30,
        overload_queue_ms=350,
        udp_coalesce_ms=20,
    )
    store = await open_store(settings)
    bus = MemoryBus(MemoryBroker(), settings.namespace, "edge", settings.instance)
    await bus.start()
    edge = await start_edge(settings, bus, store, group=None)
    try:
        assert edge.cache.ready
        shedder = edge.driver.proxy.shedder
        assert shedder is not None and shedder.settings.backlog_high == 0.3
        assert shedder.settings.queue_threshold == 0.35
        assert [b.listener.port for b in edge.sockets.bound] == [port]
        assert edge.sockets.limits.udp_coalesce == 0.02
        for _ in range(2):
            reply = await asyncio.to_thread(ask, port)
            assert reply.startswith(b"SIP/2.0 200 ")
    finally:
        await edge.stop()
        await bus.close()
        await store.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((LOOPBACK, port))


def ask(port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((LOOPBACK, 0))
        client.settimeout(5)
        client.sendto(options(port), (LOOPBACK, port))
        return client.recv(65535)


def test_parse_advertise_accepts_the_usual_forms() -> None:
    assert parse_advertise("sip.example.com") == ("sip.example.com", None)
    assert parse_advertise("203.0.113.5:5080") == ("203.0.113.5", 5080)
    assert parse_advertise("2001:db8::5") == ("2001:db8::5", None)
    assert parse_advertise("[2001:db8::5]:5080") == ("2001:db8::5", 5080)


def test_interfaces_use_the_advertised_host_and_the_private_via_port() -> None:
    bound = [
        BoundSocket(Listener("udp", "10.0.0.2", 5060), Listener("udp", "10.0.0.2", 41000)),
        BoundSocket(Listener("tcp", "10.0.0.2", 5060), None),
    ]
    udp, tcp = interfaces_of(bound, "203.0.113.5").all
    assert (udp.host, udp.port, udp.via_port) == ("203.0.113.5", 5060, 41000)
    assert (tcp.host, tcp.port, tcp.via_port) == ("203.0.113.5", 5060, 5060)
    interfaces = interfaces_of(bound, "203.0.113.5")
    assert interfaces.is_ours("10.0.0.2", 5060)  # the bound address stays ours too
    assert interfaces.is_ours("203.0.113.5", 41000)


def test_an_advertised_port_replaces_both_ports() -> None:
    bound = [BoundSocket(Listener("udp", "10.0.0.2", 5060), None)]
    [udp] = interfaces_of(bound, "203.0.113.5:5080").all
    assert (udp.port, udp.via_port) == (5080, 5080)
