"""The routing service on the real RabbitMQ and Redis: API, events to edges, commands, imports."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
import orjson
import pytest

from shared.contracts.health import TargetState, TargetStateName
from shared.health.store import HealthStore
from shared.routing_table.store import RoutingStore
from shared.store import Store
from tests.conftest import RABBITMQ_URL
from tests.services.routing.support import Deployment, deployment, routes
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

SEED_NUMBERS = ("14075551234", "+442071234567", "33123456789", "919876543210", "4912345")
SEED_ROUTES = [("1", ["1", "2"]), ("2", ["2"]), ("3", ["1", "2"]), ("4", ["2", "1"]), None]


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        yield found


async def test_api_changes_reach_two_edges(routing: Deployment) -> None:
    first, second = await routing.edge(), await routing.edge()
    await routing.seed()
    version = await RoutingStore(routing.store).version()
    await until(lambda: first.version == second.version == version)
    assert routes(first, *SEED_NUMBERS) == routes(second, *SEED_NUMBERS) == SEED_ROUTES

    reply = await routing.client.put(
        "/v1/rules/5", json={"prefix": "4420", "priority": 3, "gateways": ["1"]}
    )
    assert reply.status_code == 200
    await until(lambda: first.version == second.version == reply.json()["version"])
    assert routes(first, "442071234567") == routes(second, "442071234567") == [("5", ["1"])]

    assert (await routing.client.delete("/v1/rules/2")).status_code == 200
    assert (await routing.client.delete("/v1/gateways/1")).status_code == 200
    await until(lambda: first.version == second.version == version + 3)
    assert routes(first, "4412345", "14075551234") == [None, ("1", ["2"])]
    assert routes(second, "4412345", "14075551234") == [None, ("1", ["2"])]
    assert first.resyncs == second.resyncs == 1


async def test_crud_and_validation(routing: Deployment) -> None:
    client = routing.client
    await routing.seed()
    gateway = (await client.get("/v1/gateways/1")).json()
    assert gateway == {
        "id": "1",
        "address": "sip:198.51.100.7:5060",
        "strip": 0,
        "prefix": "",
        "attributes": "",
        "description": "PSTN 1",
        "enabled": True,
        "topology_hiding": None,
        "limits": None,
        "media_relay": None,
        "tls": None,
        "mode": None,
    }
    listing = (await client.get("/v1/rules")).json()
    assert [(r["id"], r["prefix"]) for r in listing["items"]] == [
        ("1", "1407"),
        ("2", "44"),
        ("3", "33"),
        ("4", "91"),
    ]
    assert listing["next_cursor"] is None
    assert (await client.get("/v1/rules/99")).status_code == 404
    assert (await client.delete("/v1/rules/99")).status_code == 404

    bad = await client.put("/v1/rules/9", json={"prefix": "14a", "gateways": ["1"]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "prefix"]
    dangling = await client.put("/v1/rules/9", json={"prefix": "1", "gateways": ["1", "#nope"]})
    assert dangling.status_code == 422
    assert dangling.json()["detail"][0]["msg"] == "rule 9: unknown carrier 'nope'"
    tagged = await client.put("/v1/gateways/3", json={"address": "sip:x", "billing": "eu-7"})
    assert tagged.status_code == 200
    assert (await client.get("/v1/gateways/3")).json()["billing"] == "eu-7"
    assert (await client.get("/v1/rules/9")).status_code == 404

    carrier = await client.put(
        "/v1/carriers/acme", json={"gateways": ["2", {"id": "1", "weight": 3}], "weighted": True}
    )
    assert carrier.status_code == 200
    assert carrier.json()["gateways"] == [{"id": "2", "weight": 1}, {"id": "1", "weight": 3}]
    plan = {"rules": [{"match": "^00([1-9][0-9]+)$", "replace": "+\\1"}]}
    assert (await client.put("/v1/dialplans/intl", json=plan)).status_code == 200
    assert (
        await client.put("/v1/rules/6", json={"prefix": "49", "gateways": ["#acme"]})
    ).status_code == 200
    await until(lambda: routing.service.cache.version == 10)

    dry = await client.get("/v1/route", params={"number": "0014075551234", "dialplan": "intl"})
    assert dry.status_code == 200
    assert dry.json() == {
        "number": "0014075551234",
        "routed_number": "+14075551234",
        "group": "0",
        "peer": None,
        "version": 10,
        "rule": {"id": "1", "prefix": "1407", "priority": 0, "mode": "proxy"},
        "dispatcher_sets": [],
        "dispatchers": [],
        "limits": [],
        "fraud": None,
        "gateways": [
            {
                "id": "1",
                "address": "sip:198.51.100.7:5060",
                "number": "+14075551234",
                "state": "unknown",
                "dns": None,
                "topology_hiding": None,
                "media_relay": {"policy": "nat", "set_by": "default"},
                "mode": {"mode": "proxy", "set_by": "default"},
                "manipulations": {"rule_sets": [], "number": "+14075551234", "changes": []},
            },
            {
                "id": "2",
                "address": "sip:198.51.100.8:5060",
                "number": "+14075551234",
                "state": "unknown",
                "dns": None,
                "topology_hiding": None,
                "media_relay": {"policy": "nat", "set_by": "default"},
                "mode": {"mode": "proxy", "set_by": "default"},
                "manipulations": {"rule_sets": [], "number": "+14075551234", "changes": []},
            },
        ],
    }
    weighted = (await client.get("/v1/route", params={"number": "4930"})).json()
    assert sorted(g["id"] for g in weighted["gateways"]) == ["1", "2"]
    assert (await client.get("/v1/route", params={"number": "555"})).status_code == 404
    assert (
        await client.get("/v1/route", params={"number": "1", "dialplan": "x"})
    ).status_code == 404
    assert (await client.get("/v1/route", params={"number": "1 2"})).status_code == 422


async def _dead_letters(namespace: str) -> list[tuple[bytes, str]]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{namespace}.routing.commands.dead", ensure=False)
        found = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            found.append((message.body, str((message.headers or {})["x-callmesh-reason"])))
        return found


async def test_queued_commands_apply_reply_and_dead_letter(routing: Deployment) -> None:
    edge = await routing.edge()
    sender = await routing.bus("operator")
    await routing.seed()
    batch = [
        {"op": "upsert", "kind": "gateway", "id": "3", "data": {"address": "sip:203.0.113.5"}},
        {
            "op": "upsert",
            "kind": "rule",
            "id": "7",
            "data": {"prefix": "4930", "gateways": ["3", "2"]},
        },
        {"op": "delete", "kind": "rule", "id": "4"},
    ]
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(batch)))
    assert reply == {"ok": True, "version": 7}
    await until(lambda: edge.version == 7)
    assert routes(edge, "493012345", "919876543210") == [("7", ["3", "2"]), None]

    malformed = b'{"op": "upsert", "kind": '
    invalid = orjson.dumps(
        {"op": "upsert", "kind": "rule", "id": "8", "data": {"prefix": "1x", "gateways": ["1"]}}
    )
    dangling = orjson.dumps(
        [
            {"op": "upsert", "kind": "rule", "id": "8", "data": {"prefix": "1", "gateways": ["1"]}},
            {
                "op": "upsert",
                "kind": "rule",
                "id": "9",
                "data": {"prefix": "2", "gateways": ["77"]},
            },
        ]
    )
    unknown_op = orjson.dumps({"op": "drop", "kind": "rule", "id": "1"})
    answers = [
        orjson.loads(await sender.request("routing.commands", body))
        for body in (malformed, invalid, dangling)
    ]
    await sender.send("routing.commands", unknown_op)
    assert [a["ok"] for a in answers] == [False, False, False]
    assert answers[0]["error"].startswith("malformed JSON")
    assert answers[1]["error"] == "data.prefix: String should match pattern '^[0-9]{0,32}$'"
    assert answers[2]["error"] == "rule 9: unknown gateway '77'"

    # The consumer keeps going, and nothing of the failed batches was stored.
    assert orjson.loads(
        await sender.request(
            "routing.commands", orjson.dumps({"op": "delete", "kind": "rule", "id": "3"})
        )
    ) == {"ok": True, "version": 8}
    await until(lambda: edge.version == 8)
    assert routes(edge, "18", "33123") == [None, None]
    assert await routing.service.writer.store.get("rule", "8") is None

    dead: list[tuple[bytes, str]] = []

    async def collect() -> bool:
        dead.extend(await _dead_letters(routing.namespace))
        return len(dead) >= 4

    for _ in range(100):
        if await collect():
            break
        await asyncio.sleep(0.05)
    assert [body for body, _ in dead] == [malformed, invalid, dangling, unknown_op]
    reasons = [reason for _, reason in dead]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "data.prefix: String should match pattern '^[0-9]{0,32}$'"
    assert reasons[2] == "rule 9: unknown gateway '77'"
    assert reasons[3].startswith("op: Input should be 'upsert' or 'delete'")


async def test_non_finite_numbers_in_commands_are_dead_lettered(routing: Deployment) -> None:
    await routing.seed()
    sender = await routing.bus("operator")
    version = await RoutingStore(routing.store).version()
    rule = b'{"op": "upsert", "kind": "rule", "id": "1", "data": {"gateways": ["1"], '
    gateway = b'{"op": "upsert", "kind": "gateway", "id": "1", "data": {"address": "sip:a", '
    hostile = [
        rule + b'"priority": NaN}}',
        rule + b'"cost": 1e400}}',
        b'[{"op": "delete", "kind": "rule", "id": "2"}, ' + gateway + b'"strip": Infinity}}]',
    ]
    answers = [orjson.loads(await sender.request("routing.commands", body)) for body in hostile]
    assert [a["ok"] for a in answers] == [False, False, False]
    assert all(a["error"].startswith("malformed JSON") for a in answers)
    good = orjson.dumps({"op": "delete", "kind": "rule", "id": "3"})
    assert orjson.loads(await sender.request("routing.commands", good)) == {
        "ok": True,
        "version": version + 1,
    }  # the consumer keeps going, and nothing of the hostile batch was applied
    assert await routing.service.writer.store.get("rule", "2") is not None
    dead: list[tuple[bytes, str]] = []
    for _ in range(100):
        dead.extend(await _dead_letters(routing.namespace))
        if len(dead) >= len(hostile):
            break
        await asyncio.sleep(0.05)
    assert [body for body, _ in dead] == hostile
    assert all(reason.startswith("malformed JSON") for _, reason in dead)


async def test_import_merge_replace_and_errors(routing: Deployment) -> None:
    await routing.seed()
    edge = await routing.edge()
    merge = "id,group,prefix,priority,gateways\n10,0,4930,0,2;1\n1,0,1408,0,2\n"
    reply = await routing.client.post(
        "/v1/rules:import",
        params={"mode": "merge"},
        content=merge,
        headers={"content-type": "text/csv"},
    )
    assert reply.status_code == 200
    assert reply.json() == {"mode": "merge", "version": 7, "imported": 2, "rules": 5}
    await until(lambda: edge.version == 7)
    assert routes(edge, "493012", "14075551234", "14085551234", "33123") == [
        ("10", ["2", "1"]),
        None,
        ("1", ["2"]),
        ("3", ["1", "2"]),
    ]
    replace = "id,group,prefix,priority,gateways\nz,0,,0,1\n"
    reply = await routing.client.post(
        "/v1/rules:import", params={"mode": "replace"}, content=replace
    )
    assert reply.json()["rules"] == 1
    await until(lambda: edge.version == 8)
    assert routes(edge, "493012", "33123") == [("z", ["1"]), ("z", ["1"])]

    broken = "id,group,prefix,priority,gateways\nok,0,1,0,1\nb,0,1x,0,1\nc,0,1,high,\n"
    reply = await routing.client.post("/v1/rules:import", content=broken)
    assert reply.status_code == 422
    assert [(d["loc"][1], d["loc"][2]) for d in reply.json()["detail"]] == [
        ("line 3", "prefix"),
        ("line 4", "priority"),
        ("line 4", "gateways"),
    ]
    dangling = "id,group,prefix,priority,gateways\nok,0,1,0,1;9\n"
    reply = await routing.client.post("/v1/rules:import", content=dangling)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["msg"] == "rule ok: unknown gateway '9'"
    assert (await routing.client.post("/v1/rules:import", content="a,b\n")).status_code == 422
    assert await RoutingStore(routing.store).version() == 8


async def test_replace_import_is_atomic_for_readers(routing: Deployment) -> None:
    await routing.seed()
    size = 20_000
    old = "id,group,prefix,priority,gateways\n" + "".join(
        f"old{i},0,{i},0,1\n" for i in range(size)
    )
    new = "id,group,prefix,priority,gateways\n" + "".join(
        f"new{i},0,{i},0,2\n" for i in range(size)
    )
    store = RoutingStore(routing.store)
    seen: list[set[str]] = []
    done = asyncio.Event()
    scanning = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            scanning.set()
            head = await store.head()
            kinds: set[str] = set()
            count = 0
            async for batch in store.scan_rules(head.generation, count=500):
                kinds.update(key[:3].decode() for key in batch)
                count += len(batch)
            seen.append(kinds | {f"count={count >= size}"})

    task = asyncio.create_task(reader())
    for body in (old, new, old, new):
        scanning.clear()
        await scanning.wait()  # every import runs while a scan is under way
        reply = await routing.client.post(
            "/v1/rules:import", params={"mode": "replace"}, content=body
        )
        assert reply.status_code == 200
    done.set()
    await task
    mixes = [
        kinds
        for kinds in seen
        if not (
            kinds <= {"old", "count=True"}
            or kinds <= {"new", "count=True"}
            or kinds <= {"1", "2", "3", "4", "count=False"}
        )
    ]
    assert len(seen) >= 4
    assert mixes == []
    assert json.loads((await routing.client.get("/v1/rules/new7")).text)["gateways"] == ["2"]


async def test_rules_may_target_dispatcher_sets_first(routing: Deployment) -> None:
    client = routing.client
    gateway = await client.put("/v1/gateways/1", json={"address": "sip:192.0.2.1"})
    assert gateway.status_code == 200
    farm = await client.put("/v1/rules/did", json={"prefix": "3120", "gateways": ["@farm", "1"]})
    assert farm.status_code == 200, farm.text
    await until(lambda: routing.service.cache.version == farm.json()["version"])
    dry = (await client.get("/v1/route", params={"number": "31205550000"})).json()
    assert dry["dispatcher_sets"] == ["farm"]
    assert [g["id"] for g in dry["gateways"]] == ["1"]

    after = await client.put("/v1/rules/x", json={"prefix": "1", "gateways": ["1", "@farm"]})
    assert after.status_code == 422
    assert "dispatcher set @farm must come before the gateways" in after.text
    bad_id = await client.put("/v1/rules/x", json={"prefix": "1", "gateways": ["@a:b"]})
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["body", "gateways", 0]


def gateway_state(gateway_id: str, state: TargetStateName) -> TargetState:
    return TargetState(
        target=f"gw:{gateway_id}",
        kind="gateway",
        address="sip:192.0.2.1",
        gateway_id=gateway_id,
        state=state,
        reason="test",
        since=time.time(),
    )  # fmt: skip  (one record, its fields grouped as GET /v1/targets lists them)


async def test_the_dry_run_shows_each_gateways_health_as_the_edges_see_it(
    routing: Deployment,
) -> None:
    """A stored state is loaded (at start, after a reconnect); a published one is followed."""
    await routing.seed()
    feed, health = routing.service.health, routing.service.cache.health
    await HealthStore(routing.store).write_override(gateway_state("1", "disabled"))
    loads = feed.loads
    feed.reload_soon()  # what a bus reconnect does
    await until(lambda: feed.loads > loads)
    await (await routing.bus("health")).publish(gateway_state("2", "down"))
    await until(lambda: health.state("2") == "down")
    dry = (await routing.client.get("/v1/route", params={"number": "14075551234"})).json()
    assert {g["id"]: g["state"] for g in dry["gateways"]} == {"1": "disabled", "2": "down"}


async def test_media_relay_per_gateway_and_rule_reaches_edges_and_the_dry_run(
    routing: Deployment,
) -> None:
    client = routing.client
    await routing.seed()
    edge = await routing.edge()
    put = await client.put(
        "/v1/gateways/1", json={"address": "sip:198.51.100.7:5060", "media_relay": "always"}
    )
    assert put.status_code == 200
    assert put.json()["media_relay"] == "always"
    bad = await client.put("/v1/gateways/2", json={"address": "sip:x", "media_relay": "maybe"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "media_relay"]
    rule = {"prefix": "1407", "gateways": ["1", "2"], "media_relay": "never"}
    assert (await client.put("/v1/rules/1", json=rule)).status_code == 200
    sender = await routing.bus("operator")
    command = {
        "op": "upsert",
        "kind": "rule",
        "id": "3",
        "data": {"prefix": "33", "gateways": ["2"], "media_relay": "always"},
    }
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(command)))
    assert reply["ok"] is True
    await until(lambda: edge.version == reply["version"])
    assert edge.index.gateways["1"].media_relay == "always"
    assert edge.index.rule_media == {"1": "never", "3": "always"}
    fresh = await routing.edge()  # loaded from the snapshot, not from the events
    assert fresh.index.rule_media == edge.index.rule_media
    assert fresh.index.gateways["1"].media_relay == "always"

    await until(lambda: routing.service.cache.version == reply["version"])

    async def policies(number: str, **params: str) -> list[tuple[str, dict[str, str]]]:
        dry = (await client.get("/v1/route", params={"number": number, **params})).json()
        return [(gateway["id"], gateway["media_relay"]) for gateway in dry["gateways"]]

    assert await policies("14075551234") == [
        ("1", {"policy": "always", "set_by": "gateway"}),
        ("2", {"policy": "never", "set_by": "rule"}),
    ]
    assert await policies("33123") == [("2", {"policy": "always", "set_by": "rule"})]
    assert await policies("4420") == [("2", {"policy": "nat", "set_by": "default"})]
    # CALLMESH_MEDIA_RELAY_DOMAINS=retail.example=always (the deployment's): a calling
    # subscriber's domain decides where the gateway and rule set nothing, and only there.
    assert await policies("4420", domain="Retail.Example") == [
        ("2", {"policy": "always", "set_by": "domain"})
    ]
    assert await policies("4420", domain="other.example") == [
        ("2", {"policy": "nat", "set_by": "default"})
    ]
    assert await policies("33123", domain="retail.example") == [
        ("2", {"policy": "always", "set_by": "rule"})
    ]
    bad = await client.get("/v1/route", params={"number": "4420", "domain": "a b"})
    assert bad.status_code == 422


async def test_a_command_arriving_twice_under_one_message_id_is_applied_once(
    routing: Deployment,
) -> None:
    """A resend after a lost confirm, or a redelivery after a lost acknowledgement: one
    change, one version, one event; a command without an id is applied each time."""
    edge = await routing.edge()
    sender = await routing.bus("operator")
    version = RoutingStore(routing.store)
    before = await version.version()
    once = orjson.dumps(
        {"op": "upsert", "kind": "gateway", "id": "once", "data": {"address": "sip:192.0.2.9"}}
    )
    for _ in range(3):
        await sender.send("routing.commands", once, message_id="operator-17")
    await sender.send("routing.commands", once)
    await sender.send("routing.commands", once)
    await until(lambda: edge.version >= before + 3)
    await asyncio.sleep(0.3)  # a fourth change would show here
    assert await version.version() == before + 3
    assert edge.version == before + 3
