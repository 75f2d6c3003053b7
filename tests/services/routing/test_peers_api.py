"""`/v1/peers` on the real RabbitMQ and Redis: validation, the edges' view, commands, dry run.

The edges here are routing caches fed by the service's events, as an edge
process holds one; the dry run `GET /v1/route` answers from the same cache.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.limits.model import Channel, Demand, LimitQuery
from shared.store import Store
from tests.services.routing.support import Deployment, deployment
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

PBX = {
    "addresses": ["udp:198.51.100.7:5060", "10.0.0.0/8"],
    "trusted": True,
    "group": "0",
    "dialplan": None,
    "tech_prefix": None,
    "limits": {"max_concurrent": 20, "max_cps": 50, "cps_burst": None, "cps_allowance": None},
}


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        await found.seed()
        yield found


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "addresses"),
        ({"addresses": []}, "addresses"),
        ({"addresses": ["10.0.0.0/33"]}, "addresses"),
        ({"addresses": ["udp:10.0.0.1:0"]}, "addresses"),
        ({"addresses": ["x" * 100]}, "addresses"),
        ({"addresses": "10.0.0.1"}, "addresses"),
        ({"addresses": ["10.0.0.1"], "group": "0,1"}, "group"),
        ({"addresses": ["10.0.0.1"], "tech_prefix": "a1"}, "tech_prefix"),
        ({"addresses": ["10.0.0.1"], "dialplan": "no spaces"}, "dialplan"),
        ({"addresses": ["10.0.0.1"], "limits": {"max_concurrent": 10**7}}, "limits"),
        ({"addresses": ["10.0.0.1"], "limits": {"max_cps": 1.5}}, "limits"),
        ({"addresses": ["10.0.0.1"], "limits": {"cps": 5}}, "limits"),
        ({"addresses": ["10.0.0.1"], "limits": []}, "limits"),
        ({"addresses": ["10.0.0.1"], "trusted": "sure"}, "trusted"),
        # the whole Internet trusted (free calls for anyone), or a typo that reads so
        ({"addresses": ["0.0.0.0/0"], "trusted": True}, "trusted"),
        ({"addresses": ["10.0.0.0/8", "udp:198.51.100.7/0:5060"], "trusted": True}, "trusted"),
        ({"addresses": ["128.0.0.0/1"], "trusted": True}, "trusted"),
        ({"addresses": ["::/0"], "trusted": True}, "trusted"),
        ({"addresses": ["tcp:2001:db8::/31"], "trusted": True}, "trusted"),
    ],
)
async def test_hostile_peers_are_422_naming_the_field(
    routing: Deployment, body: dict[str, Any], field: str
) -> None:
    reply = await routing.client.put("/v1/peers/p", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"][:2] == ["body", field]
    assert (await routing.client.get("/v1/peers/p")).status_code == 404


async def test_trusting_a_wide_network_takes_saying_so(routing: Deployment) -> None:
    wide = {"addresses": ["0.0.0.0/0"], "trusted": True}
    refused = await routing.client.put("/v1/peers/p", json=wide)
    assert refused.status_code == 422
    assert "0.0.0.0/0" in refused.text and "trust_wide_networks" in refused.text
    said = await routing.client.put("/v1/peers/p", json={**wide, "trust_wide_networks": True})
    assert said.status_code == 200, said.text
    assert said.json()["trusted"] is True
    untrusted = {"addresses": ["0.0.0.0/0", "::/0"], "group": "1"}  # classifies, trusts nobody
    assert (await routing.client.put("/v1/peers/q", json=untrusted)).status_code == 200
    narrow = {"addresses": ["10.0.0.0/8", "2001:db8::/32"], "trusted": True}
    assert (await routing.client.put("/v1/peers/r", json=narrow)).status_code == 200


async def test_non_json_and_non_finite_bodies_are_422(routing: Deployment) -> None:
    for body in (b"{", b'{"addresses": ["10.0.0.1"], "limits": {"max_cps": NaN}}', b"[]"):
        reply = await routing.client.put(
            "/v1/peers/p", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 422, reply.text


async def test_write_list_read_delete_and_the_edges_follow(routing: Deployment) -> None:
    client = routing.client
    first, second = await routing.edge(), await routing.edge()
    put = await client.put("/v1/peers/pbx", json={**PBX, "owner": "ops"})
    assert put.status_code == 200, put.text
    assert put.json()["limits"] == PBX["limits"]
    got = (await client.get("/v1/peers/pbx")).json()
    assert got == {"id": "pbx", **PBX, "enabled": True, "attributes": "", "description": "",
                   "trust_wide_networks": False,
                   "owner": "ops"}  # fmt: skip # the record as one value
    listing = (await client.get("/v1/peers")).json()
    assert [item["id"] for item in listing["items"]] == ["pbx"]

    def classified(edge_index: Any) -> str | None:
        match = edge_index.peers.classify("10.1.2.3", 5060, "udp", "1407")
        return None if match is None else str(match.group)

    await until(lambda: all(classified(edge.index) == "0" for edge in (first, second)))
    assert all(edge.index.peers.trusts("198.51.100.7", 5060) for edge in (first, second))
    assert not first.index.peers.trusts("198.51.100.7", 5070)

    await client.put("/v1/peers/pbx", json={**PBX, "group": "wholesale"})
    await until(lambda: all(classified(edge.index) == "wholesale" for edge in (first, second)))

    assert (await client.delete("/v1/peers/pbx")).status_code == 200
    assert (await client.delete("/v1/peers/pbx")).status_code == 404
    await until(lambda: all(classified(edge.index) is None for edge in (first, second)))
    # A fresh edge loads the table (peers included) from the snapshot.
    await client.put("/v1/peers/pbx", json=PBX)
    third = await routing.edge()
    assert classified(third.index) == "0"


async def test_peers_come_by_the_command_queue_too(routing: Deployment) -> None:
    sender = await routing.bus("ops")
    command = {"op": "upsert", "kind": "peer", "id": "q", "data": {"addresses": ["10.0.0.1"]}}
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(command)))
    assert reply["ok"] is True
    assert (await routing.client.get("/v1/peers/q")).json()["addresses"] == ["10.0.0.1"]
    bad = {**command, "data": {"addresses": ["10.0.0.1/99"]}}
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(bad)))
    assert reply["ok"] is False
    assert reply["error"].startswith("data.addresses.0: ")


async def test_the_dry_run_applies_the_peer_of_a_source(routing: Deployment) -> None:
    client = routing.client
    await client.put("/v1/rules/w", json={"group": "w", "prefix": "1407", "gateways": ["2"]})
    peer = {"addresses": ["10.0.0.0/8"], "group": "w", "tech_prefix": "99#"}
    written = await client.put("/v1/peers/acme", json=peer)
    await until(lambda: routing.service.cache.version == written.json()["version"])
    dry = await client.get(
        "/v1/route", params={"number": "99#14075551234", "source": "udp:10.1.2.3:5060"}
    )
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["peer"] == {"id": "acme", "trusted": False, "tech_prefix": "99#"}
    assert (body["group"], body["routed_number"], body["rule"]["id"]) == ("w", "14075551234", "w")
    plain = (await client.get("/v1/route", params={"number": "14075551234"})).json()
    assert (plain["peer"], plain["rule"]["id"]) == (None, "1")
    bad = await client.get("/v1/route", params={"number": "1", "source": "10.1.2.3"})
    assert bad.status_code == 422


async def test_limits_show_usage_and_the_dry_run_which_limits_apply(routing: Deployment) -> None:
    client = routing.client
    capped = {"address": "sip:198.51.100.7:5060", "limits": {"max_concurrent": 10}}
    await client.put("/v1/gateways/1", json=capped)
    written = await client.put("/v1/peers/pbx", json=PBX)
    await until(lambda: routing.service.cache.version == written.json()["version"])
    gateway = Channel("gateway:1", (Demand("gateway:1", 10),))
    query = LimitQuery("call-1", (Demand("peer:pbx", 20, 50),), (gateway,))
    assert (await routing.service.limits.acquire(query)).gateway == "gateway:1"
    listing = (await client.get("/v1/limits")).json()["items"]
    by_entity = {item["entity"]: item for item in listing}
    assert by_entity["peer:pbx"]["concurrent"] == 1
    assert (by_entity["peer:pbx"]["max_concurrent"], by_entity["peer:pbx"]["max_cps"]) == (20, 50)
    assert by_entity["gateway:1"] == {
        "entity": "gateway:1", "concurrent": 1, "max_concurrent": 10, "max_cps": None,
        "cps_tokens": None,
    }  # fmt: skip # the usage row as one value
    dry = await client.get(
        "/v1/route", params={"number": "14075551234", "source": "udp:198.51.100.7:5060"}
    )
    limits = dry.json()["limits"]
    assert [(item["entity"], item["concurrent"]) for item in limits] == [
        ("peer:pbx", 1),
        ("gateway:1", 1),
    ]


async def test_rules_carriers_and_strangers_limits_in_the_view_and_the_dry_run(
    routing: Deployment,
) -> None:
    """Rule 1 (1407 → gateways 1, 2) limits its prefix; carrier c caps gateway 2; a source
    no peer covers gets the stranger's limit of the settings (5 per second here)."""
    client = routing.client
    refused = await client.put("/v1/carriers/c", json={"gateways": ["2"], "limits": {"max_cps": 5}})
    assert refused.status_code == 422
    assert "channel cap" in refused.text
    await client.put(
        "/v1/gateways/1", json={"address": "sip:198.51.100.7", "limits": {"max_concurrent": 1}}
    )
    await client.put("/v1/carriers/c", json={"gateways": ["2"], "limits": {"max_concurrent": 3}})
    rule = {"prefix": "1407", "gateways": ["1", "2"], "limits": {"max_cps": 2, "cps_burst": 1}}
    written = await client.put("/v1/rules/1", json=rule)
    assert written.json()["limits"] == {
        "max_concurrent": None,
        "max_cps": 2,
        "cps_burst": 1,
        "cps_allowance": None,
    }
    await until(lambda: routing.service.cache.version == written.json()["version"])
    listing = (await client.get("/v1/limits")).json()["items"]
    by_entity = {item["entity"]: (item["max_concurrent"], item["max_cps"]) for item in listing}
    assert by_entity == {"rule:1": (None, 2), "gateway:1": (1, None), "carrier:c": (3, None)}
    dry = await client.get(
        "/v1/route", params={"number": "14075551234", "source": "udp:203.0.113.9:5060"}
    )
    limits = [
        (item["entity"], item["max_concurrent"], item["max_cps"]) for item in dry.json()["limits"]
    ]
    assert limits == [
        ("rule:1", None, 2),
        ("source:203.0.113.9", None, 5),
        ("gateway:1", 1, None),
        ("carrier:c", 3, None),
    ]


async def test_the_dry_run_shows_the_callers_subscriber_limits(
    namespace: str, redis_store: Store
) -> None:
    """``CALLMESH_CALL_LIMIT_PER_SUBSCRIBER`` and ``_PER_SUBSCRIBER_CPS`` hold every call of a
    subscriber: the dry run for a ``caller`` names them with their usage."""
    async with deployment(
        namespace, redis_store, call_limit_per_subscriber=2, call_limit_per_subscriber_cps=4
    ) as routing:
        await routing.seed()
        params = {"number": "14075551234", "caller": "alice@example.com"}
        dry = await routing.client.get("/v1/route", params=params)
        assert dry.status_code == 200, dry.text
        assert [
            (item["entity"], item["concurrent"], item["max_concurrent"], item["max_cps"])
            for item in dry.json()["limits"]
        ] == [("subscriber:alice@example.com", 0, 2, 4)]
        plain = await routing.client.get("/v1/route", params={"number": "14075551234"})
        assert plain.json()["limits"] == []
