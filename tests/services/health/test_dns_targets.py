"""A gateway given by name is probed at its DNS targets (dnsmasq on loopback), each a target of
its own: one failing host is down alone, and an edge's report on one host concerns it alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from shared.contracts.edge import DestinationFailed, GatewayFailed
from shared.routing_table.changes import Change
from shared.routing_table.gateway_tls import GatewayTls
from shared.routing_table.model import Gateway
from shared.routing_table.store import RoutingStore
from shared.store import Store
from tests.services.edge.tls_support import TlsGateway
from tests.services.health.support import (
    FAST,
    Tap,
    publish,
    responder,
    seed_gateways,
    start_instance,
    tap,
)
from tests.shared.dns.dnsmasq import Zone, dnsmasq

pytestmark = [pytest.mark.integration, pytest.mark.wire]

SETTLE = 10.0
DOWN_WITHIN = FAST.probe_interval * FAST.failures_to_down + 1.0


@pytest.fixture
async def events(namespace: str, redis_store: Store) -> AsyncIterator[Tap]:
    async with tap(namespace) as found:
        yield found


async def test_srv_hosts_are_probed_and_reported_one_by_one(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    live, dead = free_port(), free_port()
    zone = Zone(
        srv=(
            ("_sip._udp.carrier.test", "a.carrier.test", live, 10, 1),
            ("_sip._udp.carrier.test", "b.carrier.test", dead, 20, 1),
        ),
        hosts=(("a.carrier.test", ("127.0.0.1",)), ("b.carrier.test", ("127.0.0.1",))),
    )
    first, second = f"gw:carrier@udp:a.carrier.test:{live}", f"gw:carrier@udp:b.carrier.test:{dead}"
    far_end = await responder(live)
    with dnsmasq(zone) as server:
        await seed_gateways(redis_store, {"carrier": "sip:carrier.test"})
        instance = await start_instance(namespace, dns_servers=server.servers)
        try:
            await events.wait_for(second, lambda s: s.state == "down", DOWN_WITHIN + SETTLE)
            probed = await instance.probed(first, SETTLE)
            assert (probed["gateway_id"], probed["state"]) == ("carrier", "up")
            assert probed["address"] == f"sip:127.0.0.1:{live};transport=udp"
            assert far_end.probes >= 1
            listed = {
                item["target"]: item["state"]
                for item in (await instance.client.get("/v1/targets")).json()["items"]
            }
            assert listed == {first: "up", second: "down"}  # no target for the name itself
            failed = GatewayFailed(
                gateway_id="carrier",
                address="sip:carrier.test",
                target=f"udp:a.carrier.test:{live}",
                reason="status",
                status=503,
                retry_after=30,
                method="INVITE",
                call_id="c1",
            )
            await publish(namespace, "edge", failed)
            held = await events.wait_for(first, lambda s: s.state == "down", SETTLE)
            assert held.reason == "edge: status (503), Retry-After 30s"
            assert (await instance.target(second))["state"] == "down"  # its own probes' state
        finally:
            await instance.stop()
            far_end.close()


async def test_a_dispatcher_destination_by_name_is_probed_at_each_srv_host(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    """`ds:{set}:{uri}@{label}` per host, listed in /v1/targets; an edge's report on one host
    holds that host alone down."""
    live, dead = free_port(), free_port()
    zone = Zone(
        srv=(
            ("_sip._udp.farm.test", "a.farm.test", live, 10, 1),
            ("_sip._udp.farm.test", "b.farm.test", dead, 20, 1),
        ),
        hosts=(("a.farm.test", ("127.0.0.1",)), ("b.farm.test", ("127.0.0.1",))),
    )
    uri = "sip:farm.test"
    first, second = f"ds:farm:{uri}@udp:a.farm.test:{live}", f"ds:farm:{uri}@udp:b.farm.test:{dead}"
    far_end = await responder(live)
    with dnsmasq(zone) as server:
        instance = await start_instance(namespace, dns_servers=server.servers)
        try:
            body = {"destinations": [{"uri": uri}]}
            assert (await instance.client.put("/v1/dispatcher/sets/farm", json=body)).is_success
            await events.wait_for(second, lambda s: s.state == "down", DOWN_WITHIN + SETTLE)
            probed = await instance.probed(first, SETTLE)
            assert (probed["set_id"], probed["state"]) == ("farm", "up")
            assert probed["address"] == f"sip:127.0.0.1:{live};transport=udp"
            listed = {
                item["target"]: item["state"]
                for item in (await instance.client.get("/v1/targets")).json()["items"]
            }
            assert listed == {first: "up", second: "down"}  # no target for the name itself
            failed = DestinationFailed(
                set_id="farm",
                address=uri,
                target=f"udp:a.farm.test:{live}",
                reason="status",
                status=503,
                retry_after=30,
                method="INVITE",
                call_id="c2",
            )
            await publish(namespace, "edge", failed)
            held = await events.wait_for(first, lambda s: s.state == "down", SETTLE)
            assert held.reason == "edge: status (503), Retry-After 30s"
        finally:
            await instance.stop()
            far_end.close()


async def test_a_tls_gateway_by_name_is_probed_with_its_options_and_its_name(
    namespace: str, redis_store: Store, events: Tap, tmp_path: Path
) -> None:
    """`sips:carrier.test` with a client certificate (mutual TLS): its SRV host, dialled at its
    address, is checked against carrier.test (RFC 5922: the URI's host; the certificate names
    nothing else) and is sent the gateway's client certificate."""
    ca = CertAuthority(tmp_path / "ca")
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    gateway = TlsGateway(ca.issue("gw", hosts=("carrier.test",)), client_ca=carrier_ca)
    ours = carrier_ca.issue("edge", hosts=("edge.example.com",), client=True)
    zone = Zone(
        srv=(("_sips._tcp.carrier.test", "a.carrier.test", gateway.port, 10, 1),),
        hosts=(("a.carrier.test", ("127.0.0.1",)),),
    )
    target = f"gw:secure@tls:a.carrier.test:{gateway.port}"
    options = GatewayTls(certificate=str(ours.cert), private_key=str(ours.key))
    record = Gateway(address="sips:carrier.test", tls=options)
    await RoutingStore(redis_store).apply([Change("upsert", "gateway", "secure", record)])
    with dnsmasq(zone) as server:
        instance = await start_instance(namespace, dns_servers=server.servers, tls_ca=str(ca.cert))
        try:
            await events.wait_for(target, lambda s: s.state == "up", SETTLE + DOWN_WITHIN)
            probed = await instance.probed(target, SETTLE)
            assert probed["address"] == f"sip:127.0.0.1:{gateway.port};transport=tls"
            assert gateway.client_subjects[0] == ((("commonName", "edge.example.com"),),)
        finally:
            await instance.stop()
            gateway.close()
