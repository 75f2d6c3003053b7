"""A rule's and a gateway's `mode` (proxy or b2bua) through the API and the command queue to an
edge's cache, its snapshot and the dry run; hostile values refused naming the field."""

from __future__ import annotations

import orjson
import pytest

from shared.store import Store
from tests.services.routing.support import Deployment, deployment
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        yield found


async def test_a_rules_mode_reaches_edges_their_snapshot_and_the_dry_run(
    routing: Deployment,
) -> None:
    client = routing.client
    await routing.seed()
    edge = await routing.edge()
    rule = {"prefix": "1407", "gateways": ["1", "2"], "mode": "b2bua"}
    put = await client.put("/v1/rules/1", json=rule)
    assert put.status_code == 200, put.text
    assert put.json()["mode"] == "b2bua"
    plain = await client.put("/v1/rules/2", json={"prefix": "44", "gateways": ["2"]})
    assert plain.json()["mode"] == "proxy"  # shown, but not stored (defaults are omitted)
    assert (await client.get("/v1/rules/1")).json()["mode"] == "b2bua"
    sender = await routing.bus("operator")
    command = {
        "op": "upsert",
        "kind": "rule",
        "id": "3",
        "data": {"prefix": "33", "gateways": ["2"], "mode": "b2bua"},
    }
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(command)))
    assert reply["ok"] is True
    await until(lambda: edge.version == reply["version"])
    assert edge.index.b2bua_rules == {"1", "3"}
    fresh = await routing.edge()  # loaded from the snapshot, not from the events
    assert fresh.index.b2bua_rules == {"1", "3"}

    await until(lambda: routing.service.cache.version == reply["version"])
    dry = (await client.get("/v1/route", params={"number": "14075551234"})).json()
    assert dry["rule"] == {"id": "1", "prefix": "1407", "priority": 0, "mode": "b2bua"}
    dry = (await client.get("/v1/route", params={"number": "4420"})).json()
    assert dry["rule"]["mode"] == "proxy"


async def test_a_gateways_mode_reaches_edges_and_the_dry_run_beside_its_rules(
    routing: Deployment,
) -> None:
    client = routing.client
    await routing.seed()
    edge = await routing.edge()
    put = await client.put("/v1/gateways/2", json={"address": "sip:x", "mode": "b2bua"})
    assert put.status_code == 200, put.text
    await client.put("/v1/gateways/1", json={"address": "sip:y", "mode": "proxy"})
    rule = await client.put("/v1/rules/1", json={"prefix": "1407", "gateways": ["1", "2"]})
    await until(lambda: edge.version == rule.json()["version"])
    assert edge.index.b2bua_gateways == {"2"}
    await until(lambda: routing.service.cache.version == rule.json()["version"])
    dry = (await client.get("/v1/route", params={"number": "14075551234"})).json()
    assert [(g["id"], g["mode"]) for g in dry["gateways"]] == [
        ("1", {"mode": "proxy", "set_by": "gateway"}),
        ("2", {"mode": "b2bua", "set_by": "gateway"}),
    ]
    bad = await client.put("/v1/gateways/3", json={"address": "sip:z", "mode": "relay"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "mode"]


@pytest.mark.parametrize("mode", ["B2BUA", "b2bua ", "", None, 1, ["b2bua"], "x" * 10_000])
async def test_a_hostile_mode_is_refused_naming_the_field(
    routing: Deployment, mode: object
) -> None:
    reply = await routing.client.put(
        "/v1/rules/1", json={"prefix": "1", "gateways": ["1"], "mode": mode}
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "mode"]
    assert (await routing.client.get("/v1/rules/1")).status_code == 404


async def test_a_hostile_mode_in_a_command_is_refused_with_its_reason(
    routing: Deployment,
) -> None:
    sender = await routing.bus("operator")
    command = {
        "op": "upsert",
        "kind": "rule",
        "id": "3",
        "data": {"prefix": "33", "gateways": ["2"], "mode": "relay"},
    }
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(command)))
    assert reply["ok"] is False
    assert "mode" in reply["error"]
