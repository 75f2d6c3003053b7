"""`/v1/manipulations` on the real RabbitMQ and Redis: validation, listing, delete, the edges' view.

The edges here are routing caches fed by the service's events, as an edge
process holds one; the dry run `GET /v1/route` answers from the same cache.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.store import Store
from tests.services.routing.support import Deployment, deployment
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

CARRIER = {
    "scope": {"kind": "gateway", "id": "1"},
    "rules": [
        {"action": "rewrite_ruri_user", "strip": 1, "prefix": "00"},
        {"action": "add_header", "name": "X-Account", "value": "4711"},
    ],
}
A_NUMBER = {
    "scope": {"kind": "rule", "id": "1"},
    "rules": [{"action": "set_from", "display_name": "Callmesh", "user": "4711"}],
}


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        await found.seed()
        yield found


def rule(**fields: Any) -> dict[str, Any]:
    return {"scope": {"kind": "gateway", "id": "1"}, "rules": [fields]}


@pytest.mark.parametrize(
    "body, field, reason",
    [
        (rule(action="remove_header", pattern="(unclosed"), "rules", "invalid regex"),
        (
            rule(action="replace_header", name="X-A", pattern="a", replacement=r"\2"),
            "rules",
            "invalid replacement",
        ),
        (rule(action="add_header", name="Via", value="x"), "rules", "header 'Via' is protected"),
        (rule(action="remove_header", pattern="^(call|x-)"), "rules", "matches protected headers"),
        (rule(action="add_header", name="X-A", value="a\r\nVia: x"), "rules", "line breaks"),
        (rule(action="rewrite_ruri_user"), "rules", "changes nothing"),
        (rule(action="explode"), "rules", "does not match any of the expected tags"),
        (
            {"scope": {"kind": "gateway", "id": "9"}, "rules": CARRIER["rules"]},
            "scope",
            "manipulation m: unknown gateway '9'",
        ),
        (
            {"scope": {"kind": "rule", "id": "9"}, "rules": CARRIER["rules"]},
            "scope",
            "manipulation m: unknown rule '9'",
        ),
        (
            {"scope": {"kind": "trunk", "id": "1"}, "rules": CARRIER["rules"]},
            "scope",
            "Input should be 'source_group', 'rule', 'gateway' or 'dispatcher_set'",
        ),
    ],
)
async def test_invalid_rule_sets_are_422_naming_field_and_reason(
    routing: Deployment, body: dict[str, Any], field: str, reason: str
) -> None:
    reply = await routing.client.put("/v1/manipulations/m", json=body)
    assert reply.status_code == 422, reply.text
    error = reply.json()["detail"][0]
    assert error["loc"][:2] == ["body", field]
    assert reason in error["msg"]
    assert (await routing.client.get("/v1/manipulations/m")).status_code == 404


async def test_write_list_read_delete_and_the_edges_follow(routing: Deployment) -> None:
    client = routing.client
    first, second = await routing.edge(), await routing.edge()
    put = await client.put("/v1/manipulations/carrier-1", json=CARRIER)
    assert put.status_code == 200, put.text
    assert (await client.put("/v1/manipulations/a-number", json=A_NUMBER)).status_code == 200
    got = (await client.get("/v1/manipulations/carrier-1")).json()
    assert got["scope"] == CARRIER["scope"]
    assert [r["action"] for r in got["rules"]] == ["rewrite_ruri_user", "add_header"]
    listing = (await client.get("/v1/manipulations")).json()
    assert [item["id"] for item in listing["items"]] == ["a-number", "carrier-1"]

    await until(lambda: all(len(edge.index.manipulations) == 2 for edge in (first, second)))
    for edge in (first, second):
        sets = edge.index.manipulations.for_branch("0", "1", "1")
        assert [s.id for s in sets] == ["a-number", "carrier-1"]
        assert edge.index.manipulations.for_branch("0", "2", "2") == []

    assert (await client.delete("/v1/manipulations/carrier-1")).status_code == 200
    assert (await client.get("/v1/manipulations/carrier-1")).status_code == 404
    assert (await client.delete("/v1/manipulations/carrier-1")).status_code == 404
    await until(lambda: all(len(edge.index.manipulations) == 1 for edge in (first, second)))
    assert [s.id for s in first.index.manipulations.for_branch("0", "1", "1")] == ["a-number"]
    listing = (await client.get("/v1/manipulations")).json()
    assert [item["id"] for item in listing["items"]] == ["a-number"]


async def test_the_dry_run_shows_what_the_attached_sets_do(routing: Deployment) -> None:
    client = routing.client
    await client.put("/v1/manipulations/carrier-1", json=CARRIER)
    written = await client.put("/v1/manipulations/a-number", json=A_NUMBER)
    await until(lambda: routing.service.cache.version == written.json()["version"])
    dry = (await client.get("/v1/route", params={"number": "14075551234"})).json()
    by_gateway = {gateway["id"]: gateway["manipulations"] for gateway in dry["gateways"]}
    assert by_gateway["1"]["rule_sets"] == ["a-number", "carrier-1"]
    assert by_gateway["1"]["number"] == "004075551234"
    assert [
        (c["rule_set"], c["action"], c["target"], c["after"]) for c in by_gateway["1"]["changes"]
    ] == [
        ("a-number", "set_from", "From", '"Callmesh" <sip:4711@edge.invalid>;tag=dryrun'),
        ("carrier-1", "rewrite_ruri_user", "Request-URI user", "004075551234"),
        ("carrier-1", "add_header", "X-Account", "4711"),
    ]
    # Gateway 2 of the same rule gets the rule's set only.
    assert by_gateway["2"]["rule_sets"] == ["a-number"]
    assert by_gateway["2"]["number"] == "14075551234"
