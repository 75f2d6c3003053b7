"""`/v1/fraud` on the real RabbitMQ and Redis: rules validated (hostile bodies 422), held by
the edges' caches, sent by the command queue; the state, unblocking, the dry run's verdict,
and call ends from completed call records (concurrent slots freed, minutes added, events)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from shared.bus import Envelope
from shared.contracts.accounting import CallRecord, CdrCompleted, CdrCompletedBatch
from shared.fraud.store import FraudStore
from shared.store import Store
from tests.services.routing.support import Deployment, deployment
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

ALICE = "subscriber:alice@example.com"
PREMIUM = {
    "caller": ALICE,
    "prefixes": ["1900", "44909"],
    "calls_per_minute": {"warning": 2, "critical": 3},
    "minutes_per_day": {"warning": 5},
    "block": "account",
}


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        await found.seed()
        await found.client.put("/v1/rules/premium", json={"prefix": "1900", "gateways": ["1"]})
        yield found


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "prefixes"),
        ({"prefixes": [], "sequential": {"warning": 1}}, "prefixes"),
        ({"prefixes": ["19a"], "sequential": {"warning": 1}}, "prefixes"),
        ({"prefixes": ["1" * 33], "sequential": {"warning": 1}}, "prefixes"),
        ({"prefixes": ["1"] * 1001, "sequential": {"warning": 1}}, "prefixes"),
        ({"prefixes": ["1"], "caller": "alice", "sequential": {"warning": 1}}, "caller"),
        ({"prefixes": ["1"], "caller": "peer:a b", "sequential": {"warning": 1}}, "caller"),
        ({"prefixes": ["1"], "sequential": {"warning": 0}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {"warning": 1.5}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {"warning": 10**7}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {"warning": 5, "critical": 5}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {"warn": 1}}, "sequential"),
        ({"prefixes": ["1"], "sequential": {"warning": 1}, "block": "all"}, "block"),
        ({"prefixes": "1900", "sequential": {"warning": 1}}, "prefixes"),
    ],
)
async def test_hostile_rules_are_422_naming_the_field(
    routing: Deployment, body: dict[str, Any], field: str
) -> None:
    reply = await routing.client.put("/v1/fraud/rules/r", json=body)
    assert reply.status_code == 422, reply.text
    assert field in [str(part) for part in reply.json()["detail"][0]["loc"]], reply.text
    assert (await routing.client.get("/v1/fraud/rules/r")).status_code == 404


async def test_a_rule_without_any_threshold_and_non_finite_bodies_are_422(
    routing: Deployment,
) -> None:
    reply = await routing.client.put("/v1/fraud/rules/r", json={"prefixes": ["1"]})
    assert reply.status_code == 422 and "at least one of" in reply.text
    for body in (b"{", b'{"prefixes": ["1"], "sequential": {"warning": NaN}}', b"[]"):
        reply = await routing.client.put(
            "/v1/fraud/rules/r", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 422, reply.text


async def test_write_read_delete_and_the_edges_follow(routing: Deployment) -> None:
    client = routing.client
    edge = await routing.edge()
    put = await client.put("/v1/fraud/rules/premium", json={**PREMIUM, "owner": "noc"})
    assert put.status_code == 200, put.text
    got = (await client.get("/v1/fraud/rules/premium")).json()
    assert (got["owner"], got["block"], got["prefixes"]) == ("noc", "account", ["1900", "44909"])
    assert [item["id"] for item in (await client.get("/v1/fraud/rules")).json()["items"]] == [
        "premium"
    ]

    def watched() -> bool:
        return edge.index.fraud.query("c", ALICE, "19005550000") is not None

    await until(watched)
    assert edge.index.fraud.query("c", "subscriber:bob@example.com", "19005550000") is None
    assert (await client.delete("/v1/fraud/rules/premium")).status_code == 200
    assert (await client.delete("/v1/fraud/rules/premium")).status_code == 404
    await until(lambda: not watched())
    await client.put("/v1/fraud/rules/premium", json=PREMIUM)
    fresh = await routing.edge()  # loads the rules from the snapshot
    assert fresh.index.fraud.query("c", ALICE, "19005550000") is not None


async def test_rules_come_by_the_command_queue_too(routing: Deployment) -> None:
    sender = await routing.bus("ops")
    command = {"op": "upsert", "kind": "fraud_rule", "id": "q", "data": PREMIUM}
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(command)))
    assert reply["ok"] is True, reply
    assert (await routing.client.get("/v1/fraud/rules/q")).json()["caller"] == ALICE
    bad = {**command, "data": {**PREMIUM, "block": "everything"}}
    reply = orjson.loads(await sender.request("routing.commands", orjson.dumps(bad)))
    assert reply["ok"] is False and reply["error"].startswith("data.block: ")


async def test_state_dry_run_and_unblock(routing: Deployment) -> None:
    client, service = routing.client, routing.service
    written = await client.put("/v1/fraud/rules/premium", json=PREMIUM)
    await until(lambda: service.cache.version == written.json()["version"])
    params = {"number": "19005550000", "caller": "alice@Example.com"}
    dry = (await client.get("/v1/route", params=params)).json()["fraud"]
    assert dry["verdict"] == "admitted" and dry["account"] == ALICE
    assert dry["rules"][0]["next_call"] == {"calls_per_minute": "ok", "minutes_per_day": "ok"}
    fraud: FraudStore = service.fraud
    index = service.cache.index
    verdicts = []
    for n in range(3):
        query = index.fraud.query(f"call-{n}", ALICE, "19005550000")
        assert query is not None
        verdicts.append(await fraud.check(query))
    block = verdicts[2].block_id
    assert block is not None
    state = (await client.get("/v1/fraud/state")).json()
    assert [b["id"] for b in state["blocks"]] == [block]
    (counts,) = state["counts"]
    assert (counts["rule"], counts["account"], counts["calls_per_minute"]) == ("premium", ALICE, 3)
    assert counts["levels"]["calls_per_minute"] == {"warning": 2, "critical": 3}
    dry = (await client.get("/v1/route", params=params)).json()["fraud"]
    assert dry["verdict"] == "refused" and dry["block"]["id"] == block
    assert (await client.get("/v1/route", params={"number": "1407555"})).json()["fraud"] is None

    listener = await routing.bus("ops")
    removed: list[Envelope] = []

    async def heard(envelope: Envelope) -> None:
        removed.append(envelope)

    await listener.subscribe(["fraud.block.removed"], heard)
    assert (await client.post(f"/v1/fraud/blocks/{block}:unblock")).status_code == 200
    assert (await client.post(f"/v1/fraud/blocks/{block}:unblock")).status_code == 404
    assert (await client.post("/v1/fraud/blocks/not-an-id:unblock")).status_code == 404
    await until(lambda: bool(removed))
    assert removed[0].data["account"] == ALICE
    dry = (await client.get("/v1/route", params=params)).json()["fraud"]
    assert dry["verdict"] == "admitted"


async def test_completed_call_records_free_slots_add_minutes_and_warn(
    routing: Deployment,
) -> None:
    service = routing.service
    written = await routing.client.put("/v1/fraud/rules/premium", json=PREMIUM)
    await until(lambda: service.cache.version == written.json()["version"])
    query = service.cache.index.fraud.query("long-call", ALICE, "44909123")
    assert query is not None
    await service.fraud.check(query)
    listener = await routing.bus("ops")
    heard: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        heard.append(envelope)

    await listener.subscribe(["fraud.threshold.#"], collect)
    record = CallRecord(
        call_id="long-call",
        from_tag="t",
        state="complete",
        disposition="answered",
        setup_at=1.0,
        billable_seconds=360,
        last_seen_at=2.0,
    )
    completed = CdrCompleted(version=1, record=record)
    other = CdrCompleted(version=1, record=record.model_copy(update={"call_id": "other-call"}))
    # Delivered alone, then twice in a batch (CALLMESH_ACCOUNTING_COMPLETED_BATCH): counted once.
    await listener.publish(completed)
    await listener.publish(CdrCompletedBatch(completed=[other, completed, completed]))
    await until(lambda: bool(heard))
    await asyncio.sleep(0.3)
    assert len(heard) == 1
    event = heard[0]
    assert event.type == "fraud.threshold.warning"
    assert event.data["metric"] == "minutes_per_day" and event.data["value"] == 6.0
    assert (event.data["threshold"], event.data["source"]) == (5, "routing")
    assert event.data["window"] == 86400.0
    (counts,) = await service.fraud.counts([("premium", ALICE)])
    assert (counts.concurrent, counts.minutes_per_day) == (0, 6.0)


async def test_a_batch_of_completed_records_counts_each_call(routing: Deployment) -> None:
    """``accounting.cdr.completed.batch`` (what the accounting service sends with
    ``CALLMESH_ACCOUNTING_COMPLETED_BATCH`` above 1) adds each call's minutes."""
    service = routing.service
    written = await routing.client.put("/v1/fraud/rules/premium", json=PREMIUM)
    await until(lambda: service.cache.version == written.json()["version"])
    ids = ["batched-1", "batched-2"]
    for call_id in ids:
        query = service.cache.index.fraud.query(call_id, ALICE, "44909123")
        assert query is not None
        await service.fraud.check(query)
    records = [
        CallRecord(
            call_id=call_id,
            from_tag="t",
            state="complete",
            disposition="answered",
            setup_at=1.0,
            billable_seconds=60,
            last_seen_at=2.0,
        )
        for call_id in ids
    ]
    listener = await routing.bus("ops")
    await listener.publish(
        CdrCompletedBatch(completed=[CdrCompleted(version=1, record=r) for r in records])
    )

    for _ in range(200):  # bounded: about 20 s
        (counts,) = await service.fraud.counts([("premium", ALICE)])
        if counts.minutes_per_day >= 2:
            break
        await asyncio.sleep(0.1)
    assert (counts.concurrent, counts.minutes_per_day) == (0, 2.0)
