"""The edge's routing cache against the real RabbitMQ and Redis: snapshot, gaps, reconnects."""

from __future__ import annotations

import asyncio

import pytest

from shared.routing_table import store as table_store
from shared.routing_table.cache import RoutingCache
from shared.routing_table.changes import Change
from shared.routing_table.model import Rule
from shared.routing_table.store import RoutingStore
from shared.store import Store
from tests.services.routing.support import Deployment, cut_connection, deployment, routes
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        yield found


async def test_snapshot_routes_before_any_event(routing: Deployment) -> None:
    await routing.seed()
    edge = await routing.edge()
    assert edge.version == 6
    assert routes(edge, "14075551234", "919876543210") == [("1", ["1", "2"]), ("4", ["2", "1"])]


async def test_version_gap_reloads_from_redis(routing: Deployment) -> None:
    await routing.seed()
    edge = await routing.edge()
    store = RoutingStore(routing.store)
    # A change stored but never announced (its publisher died): the next event shows the gap.
    await store.apply([Change("upsert", "rule", "silent", Rule(prefix="49", gateways=("1",)))])
    reply = await routing.client.put("/v1/rules/6", json={"prefix": "61", "gateways": ["2"]})
    await until(lambda: edge.version == reply.json()["version"] == 8)
    assert routes(edge, "4930", "6123") == [("silent", ["1"]), ("6", ["2"])]
    assert edge.resyncs == 2


async def test_health_state_and_dialplan(routing: Deployment) -> None:
    await routing.seed()
    plan = {"rules": [{"match": "^0([1-9][0-9]+)$", "replace": "+44\\1"}]}
    await routing.client.put("/v1/dialplans/uk", json=plan)
    edge = await routing.edge()
    edge.health.set("1", "down")
    route = edge.lookup(edge.translate("uk", "02071234567"))
    assert route is not None
    assert [(hop.gateway.id, hop.number, hop.state) for hop in route.hops] == [
        ("2", "+442071234567", "unknown")
    ]
    route = edge.lookup("14075551234")
    assert route is not None
    assert [(hop.gateway.id, hop.state) for hop in route.hops] == [("1", "down"), ("2", "unknown")]
    assert [hop.gateway.id for hop in route.usable()] == ["2"]
    assert edge.translate("uk", "999") == "999"
    with pytest.raises(KeyError):
        edge.translate("fr", "0142")


async def test_connection_cut_during_changes_ends_with_the_stored_table(
    routing: Deployment,
) -> None:
    await routing.seed()
    edge = await routing.edge()
    edge_bus = routing.buses[-1]
    resyncs = edge.resyncs
    writes = asyncio.create_task(_churn(routing, 60))
    await until(lambda: edge.version > 10)
    await cut_connection(edge_bus.connection_name)
    await writes
    await until(lambda: edge.resyncs > resyncs)  # the reconnect may come after the last write
    store = RoutingStore(routing.store)
    final = await store.version()
    await until(lambda: edge.version == final)

    stored: dict[str, list[str]] = {}
    head = await store.head()
    async for batch in store.scan_rules(head.generation):
        for key, raw in batch.items():
            stored[key.decode()] = list(Rule.model_validate_json(raw).gateways)
    cached = {rule.id: list(rule.targets.ids) for rule in edge.index.rules()}
    assert cached == stored
    assert sorted(edge.index.gateways) == sorted(head.records["gateway"])


async def _churn(routing: Deployment, count: int) -> None:
    for n in range(count):
        if n % 3 == 2:
            await routing.client.delete(f"/v1/rules/c{n - 1}")
        else:
            body = {"prefix": f"7{n}", "gateways": ["1", "2"] if n % 2 else ["2"]}
            (await routing.client.put(f"/v1/rules/c{n}", json=body)).raise_for_status()
        await asyncio.sleep(0.02)
    (await routing.client.put("/v1/gateways/9", json={"address": "sip:gw9"})).raise_for_status()


async def test_snapshot_after_imports_and_changes_is_the_stored_table(
    routing: Deployment,
) -> None:
    """Packed chunks + changed rules (replace, single edits, a merge on top) = the hash."""
    await routing.seed()
    deck = "id,group,prefix,priority,gateways\n" + "".join(
        f"d{i},0,{i},{i % 3},{'1;2' if i % 2 else '#c'}\n" for i in range(3000)
    )
    (await routing.client.put("/v1/carriers/c", json={"gateways": ["2", "1"]})).raise_for_status()
    for mode, body in (("replace", deck), ("merge", "id,group,prefix,priority,gateways\n")):
        reply = await routing.client.post("/v1/rules:import", params={"mode": mode}, content=body)
        assert reply.status_code == 200, reply.text
        (await routing.client.delete(f"/v1/rules/d{len(mode)}")).raise_for_status()
        moved = {"prefix": "4420", "group": "0,7", "gateways": ["2"]}
        (await routing.client.put(f"/v1/rules/d{len(mode) + 1}", json=moved)).raise_for_status()
    merged = "id,group,prefix,priority,gateways\nd9,0,999,5,1\nm1,7,1,0,2\n"
    reply = await routing.client.post("/v1/rules:import", params={"mode": "merge"}, content=merged)
    assert reply.status_code == 200, reply.text

    edge = await routing.edge()
    cached = cached_rules(edge)
    assert cached == await stored_rules(routing)
    assert len(cached) == 3000 - 2 + 1
    assert routes(edge, "44201", "9991") == [("d6", ["2"]), ("d9", ["1"])]
    route = edge.lookup("10", group="7")
    assert route is not None and route.rule_id == "m1"


RuleFields = dict[str, tuple[str, str, int, list[str]]]


async def stored_rules(routing: Deployment) -> RuleFields:
    """Rule id → (groups, prefix, priority, targets) as the live rules hash has them."""
    store = RoutingStore(routing.store)
    stored: RuleFields = {}
    async for batch in store.scan_rules((await store.head()).generation):
        for key, raw in batch.items():
            rule = Rule.model_validate_json(raw)
            stored[key.decode()] = (rule.group, rule.prefix, rule.priority, list(rule.gateways))
    return stored


def cached_rules(edge: RoutingCache) -> RuleFields:
    """The same fields as an edge's index has them."""
    return {
        rule.id: (",".join(rule.groups), rule.prefix, rule.priority, list(rule.targets.ids))
        for rule in edge.index.rules()
    }


async def test_merges_keep_the_snapshot_about_the_size_of_the_table(
    routing: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merging the whole deck again and again (single changes between) does not grow what
    an edge decodes past about twice the table, and the edge still loads exactly it."""
    monkeypatch.setattr(table_store, "RULES_PER_CHUNK", 100)
    await routing.seed()
    header = "id,group,prefix,priority,gateways\n"
    deck = header + "".join(f"d{i},0,{i},0,{'1;2' if i % 2 else '2'}\n" for i in range(1000))
    import_url = "/v1/rules:import"
    reply = await routing.client.post(import_url, params={"mode": "replace"}, content=deck)
    assert reply.status_code == 200, reply.text
    redis, names = routing.store.redis, RoutingStore(routing.store)
    for merge in range(6):
        (await routing.client.delete(f"/v1/rules/d{merge}")).raise_for_status()
        added = {"prefix": f"5555{merge}", "gateways": ["1"]}
        (await routing.client.put(f"/v1/rules/m{merge}", json=added)).raise_for_status()
        again = header + "".join(line + "\n" for line in deck.splitlines()[10:])  # d9..d999
        reply = await routing.client.post(import_url, params={"mode": "merge"}, content=again)
        assert reply.status_code == 200, reply.text
        generation = (await names.head()).generation
        chunks = await redis.llen(names._snapshot_prefix + generation)
        assert chunks <= 2 * 10 + 2 + 1  # the rules need 10; one merge may add a deck's 10
    assert await redis.scard(names._changed_prefix + generation) == 0  # compacted at least once
    stored = await stored_rules(routing)
    edge = await routing.edge()
    assert cached_rules(edge) == stored
    assert len(stored) == 1000 - 6 + 6  # d0..d5 deleted, m0..m5 added
    assert routes(edge, "5000", "555551", "61", "3") == [
        ("d500", ["2"]),
        ("m5", ["1"]),
        ("d61", ["1", "2"]),
        None,
    ]
