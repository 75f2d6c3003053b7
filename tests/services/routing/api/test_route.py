"""The dry run's dispatcher sets: each destination with its state, one given by name with its DNS
targets (dnsmasq on loopback) and each target's state, one that does not resolve with why."""

from __future__ import annotations

import time

import pytest

from shared.contracts.health import TargetState, TargetStateName
from shared.dispatcher import DispatcherSet, SetMember
from shared.health.store import HealthStore
from shared.store import Store
from tests.services.routing.support import deployment
from tests.shared.bus.support import until
from tests.shared.dns.dnsmasq import Zone, dnsmasq

pytestmark = [pytest.mark.integration, pytest.mark.wire]

FIRST, SECOND = 5071, 5072


def state(target: str, name: TargetStateName) -> TargetState:
    return TargetState(
        target=target,
        kind="destination",
        address="sip:127.0.0.1",
        set_id="farm",
        state=name,
        reason="test",
        since=time.time(),
    )


async def test_dispatcher_destinations_by_name_show_their_dns_targets_and_states(
    namespace: str, redis_store: Store
) -> None:
    zone = Zone(
        srv=(
            ("_sip._udp.farm.test", "a.farm.test", FIRST, 10, 1),
            ("_sip._udp.farm.test", "b.farm.test", SECOND, 20, 1),
        ),
        hosts=(("a.farm.test", ("127.0.0.1",)), ("b.farm.test", ("127.0.0.1",))),
    )
    with dnsmasq(zone) as server:
        async with deployment(namespace, redis_store, dns_servers=server.servers) as routing:
            health = HealthStore(redis_store)
            members = ("sip:farm.test", "sip:192.0.2.5:5060", "sip:nowhere.test")
            destinations = tuple(SetMember(uri=uri) for uri in members)
            farm = DispatcherSet(destinations=destinations, mode="b2bua")
            await health.put_dispatcher_set("farm", farm)
            await health.write_override(
                state(f"ds:farm:sip:farm.test@udp:b.farm.test:{SECOND}", "down")
            )
            await health.write_override(state("ds:farm:sip:192.0.2.5:5060", "up"))
            gateway = await routing.client.put("/v1/gateways/1", json={"address": "sip:192.0.2.1"})
            assert gateway.status_code == 200
            rule = {"prefix": "3120", "gateways": ["@farm", "1"]}
            written = await routing.client.put("/v1/rules/did", json=rule)
            await until(lambda: routing.service.cache.version == written.json()["version"])
            dry = (await routing.client.get("/v1/route", params={"number": "31205550000"})).json()
    assert dry["dispatcher_sets"] == ["farm"]
    [found] = dry["dispatchers"]
    assert (found["id"], found["algorithm"]) == ("farm", "round_robin")
    assert found["mode"] == {"mode": "b2bua", "set_by": "set"}  # the edge's B2BUA calls them
    by_name, by_address, nowhere = found["destinations"]
    assert by_name["uri"] == "sip:farm.test" and by_name["state"] is None
    assert by_name["dns"]["name"] == "farm.test"
    assert [(t["target"], t["priority"], t["state"]) for t in by_name["dns"]["targets"]] == [
        (f"udp:a.farm.test:{FIRST}", 10, "unknown"),
        (f"udp:b.farm.test:{SECOND}", 20, "down"),
    ]
    assert by_address == {"uri": "sip:192.0.2.5:5060", "state": "up", "dns": None}
    assert nowhere["dns"]["targets"] == []
    assert "no such name" in nowhere["dns"]["reason"]


async def test_a_set_the_health_service_does_not_have_lists_no_destinations(
    namespace: str, redis_store: Store
) -> None:
    async with deployment(namespace, redis_store) as routing:
        await routing.client.put("/v1/gateways/1", json={"address": "sip:192.0.2.1"})
        written = await routing.client.put(
            "/v1/rules/did", json={"prefix": "3120", "gateways": ["@gone", "1"]}
        )
        await until(lambda: routing.service.cache.version == written.json()["version"])
        dry = (await routing.client.get("/v1/route", params={"number": "31205550000"})).json()
    proxied = {"mode": "proxy", "set_by": "default"}
    gone: dict[str, object] = {"id": "gone", "algorithm": None, "mode": proxied, "destinations": []}
    assert dry["dispatchers"] == [gone]
