"""The service end to end: events on the bus in, records and completions out, exactly once.

Each test runs on the in-memory bus with SQLite and on the real RabbitMQ with
PostgreSQL (``accounting_url`` is parametrised; the PostgreSQL side is
``integration``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import REGISTRY

from services.accounting.fold import fold_call
from services.accounting.store import Applied
from shared.bus import REASON_HEADER
from shared.contracts.calls import CallAnswered, CallEvent
from tests.conftest import RABBITMQ_URL
from tests.netcut import NetCut
from tests.services.accounting.calls import answered_call, failed, started, with_legs
from tests.services.accounting.support import Deployment, deployment, until, until_async


async def publish(found: Deployment, events: list[CallEvent]) -> None:
    for event in events:
        await found.edge.publish(event)


async def record_of(found: Deployment, call_id: str) -> dict[str, object] | None:
    response = await found.client.get(f"/v1/cdrs/{call_id}")
    if response.status_code == 404:
        return None
    (item,) = response.json()["items"]
    return dict(item)


def store_errors() -> float:
    return REGISTRY.get_sample_value("callmesh_accounting_store_errors_total") or 0.0


def expected(events: list[CallEvent]) -> dict[str, object]:
    return dict(fold_call(events)[0].model_dump(mode="json"))


async def settled(found: Deployment, call_id: str, events: list[CallEvent]) -> dict[str, object]:
    """The stored record once it equals the fold of ``events``."""
    want = expected(events)

    async def done() -> bool:
        got = await record_of(found, call_id)
        return got is not None and {k: v for k, v in got.items() if k != "version"} == want

    await until_async(done)
    found_record = await record_of(found, call_id)
    assert found_record is not None
    return found_record


async def test_a_call_becomes_one_record_and_one_completion(
    namespace: str, accounting_url: str
) -> None:
    async with deployment(namespace, accounting_url) as found:
        events = answered_call()
        await publish(found, events)
        record = await settled(found, "c1", events)
        await until(lambda: len(found.completed) == 1)
        (completed,) = found.completed
        assert completed.version == record["version"]
        assert completed.record == fold_call(events)[0]


async def test_a_call_id_with_a_slash_is_found(namespace: str, accounting_url: str) -> None:
    async with deployment(namespace, accounting_url) as found:
        await publish(found, [started("a/b@host")])
        await until_async(lambda: record_of(found, "a/b@host"))
        encoded = await found.client.get("/v1/cdrs/a%2Fb%40host")
        assert encoded.json()["items"][0]["call_id"] == "a/b@host"


async def test_duplicates_and_disorder_change_nothing(namespace: str, accounting_url: str) -> None:
    async with deployment(namespace, accounting_url) as found:
        events = answered_call()
        await publish(found, events)
        first = await settled(found, "c1", events)
        await until(lambda: len(found.completed) == 1)
        shuffled = random.Random(3).sample(events, len(events))
        await publish(found, shuffled)
        await publish(found, [failed("zz")])  # a marker: once its record exists, all is applied
        await until_async(lambda: record_of(found, "zz"))
        assert await record_of(found, "c1") == first
        assert {c.version for c in found.completed if c.record.call_id == "c1"} == {
            first["version"]
        }


async def test_a_bye_before_the_answer_still_gives_the_right_record(
    namespace: str, accounting_url: str
) -> None:
    async with deployment(namespace, accounting_url) as found:
        events = answered_call()
        await publish(found, list(reversed(events)))
        await settled(found, "c1", events)
        await until(lambda: bool(found.completed))
        best = max(found.completed, key=lambda c: c.version)
        assert best.record == fold_call(events)[0]


async def test_bad_events_are_dead_lettered_and_the_queue_goes_on(
    namespace: str, accounting_url: str
) -> None:
    async with deployment(namespace, accounting_url) as found:
        envelope = found.edge.envelope(started("bad"))
        unknown_version = envelope.model_copy(update={"schema_version": 9})
        malformed = envelope.model_copy(update={"data": {"call_id": "bad"}})
        for body in (unknown_version.to_bytes(), malformed.to_bytes(), b"{not json"):
            await found.edge.send("accounting.calls", body)
        await publish(found, [started("good")])
        await until_async(lambda: record_of(found, "good"))
        await until(lambda: len(found.dead) == 3)
        reasons = [message.headers[REASON_HEADER] for message in found.dead]
        assert "schema version 9" in reasons[0]
        assert reasons[1] == "malformed edge.call.started: at: Field required"
        assert reasons[2].startswith("not an event envelope")
        assert await record_of(found, "bad") is None


@pytest.mark.parametrize("accounting_url", ["postgresql"], indirect=True)
@pytest.mark.integration
async def test_two_instances_on_one_queue_agree(namespace: str, accounting_url: str) -> None:
    async with deployment(namespace, accounting_url, instances=2) as found:
        calls = {f"c{n}": answered_call(f"c{n}") for n in range(30)}
        work = [event for events in calls.values() for event in events]
        await publish(found, random.Random(5).sample(work * 2, len(work) * 2))
        for call_id, events in calls.items():
            await settled(found, call_id, events)
        await until(lambda: {c.record.call_id for c in found.completed} == set(calls))
        await until_async(lambda: silent(found))
        versions = {c.record.call_id: c.version for c in found.completed}
        for call_id in calls:
            record = await record_of(found, call_id)
            assert record is not None
            assert versions[call_id] <= int(str(record["version"]))


async def silent(found: Deployment) -> bool:
    """Whether every event has been applied (a marker call published last has its record)."""
    marker = f"marker-{len(found.completed)}"
    await publish(found, [failed(marker)])
    await until_async(lambda: record_of(found, marker))
    return True


@pytest.mark.parametrize("accounting_url", ["postgresql"], indirect=True)
@pytest.mark.integration
async def test_a_crash_between_commit_and_ack_redelivers_without_change(
    namespace: str, accounting_url: str
) -> None:
    """The consumer's connection dies right after the BYE's commit: the BYE comes again."""
    host, port = RABBITMQ_URL.rsplit("@", 1)[1].rstrip("/").split(":")
    cut = await NetCut(host, int(port)).start()
    url = RABBITMQ_URL.replace(f"{host}:{port}", f"127.0.0.1:{cut.port}")
    try:
        async with deployment(namespace, accounting_url, amqp_url=url) as found:
            (service,) = found.services
            store = service.records
            real_apply = store.apply_many
            applied: list[tuple[str, bool]] = []

            async def apply_then_crash(batch: Sequence[CallEvent]) -> list[Applied]:
                results = await real_apply(batch)
                outcomes = [
                    (e.routing_key, r.duplicate) for e, r in zip(batch, results, strict=True)
                ]
                applied.extend(outcomes)
                if ("edge.call.ended", False) in outcomes:
                    cut.cut()  # committed; the ack will not get through
                    cut.restore()
                return results

            store.apply_many = apply_then_crash  # type: ignore[method-assign]
            events = answered_call()
            await publish(found, events)
            record = await settled(found, "c1", events)
            await until(lambda: ("edge.call.ended", True) in applied)
            assert applied.count(("edge.call.ended", False)) == 1
            assert await record_of(found, "c1") == record
            await until(lambda: bool(found.completed))
            versions = {c.version for c in found.completed if c.record.call_id == "c1"}
            assert versions == {record["version"]}
    finally:
        await cut.close()


@pytest.mark.parametrize("accounting_url", ["postgresql"], indirect=True)
@pytest.mark.integration
async def test_a_database_outage_holds_the_event_until_it_is_back(
    namespace: str, accounting_url: str
) -> None:
    host_port = accounting_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    cut = await NetCut(host, int(port)).start()
    through_cut = accounting_url.replace(host_port, f"127.0.0.1:{cut.port}")
    try:
        async with deployment(namespace, through_cut) as found:
            cut.cut()
            errors = store_errors()
            events = answered_call()
            await publish(found, events)
            await until(lambda: store_errors() >= errors + 2)
            assert found.dead == []
            cut.restore()
            await settled(found, "c1", events)
    finally:
        await cut.close()


async def test_listing_filters_and_pages(namespace: str, accounting_url: str) -> None:
    async with deployment(namespace, accounting_url) as found:
        calls = [answered_call(f"c{n}") for n in range(5)]
        await publish(found, [e for events in calls for e in events])
        busy_call = [started("b1", callee="+4940"), failed("b1")]
        await publish(found, busy_call)
        for n, events in enumerate(calls):
            await settled(found, f"c{n}", events)
        await settled(found, "b1", busy_call)  # its failure too, not only its start
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await found.client.get("/v1/cdrs", params=params)).json()
            seen += [item["call_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == ["b1", "c0", "c1", "c2", "c3", "c4"]
        assert len(seen) == len(set(seen))
        busy = (await found.client.get("/v1/cdrs", params={"disposition": "busy"})).json()
        assert [item["call_id"] for item in busy["items"]] == ["b1"]
        by_callee = await found.client.get("/v1/cdrs", params={"callee": "+4940"})
        assert [item["call_id"] for item in by_callee.json()["items"]] == ["b1"]
        by_gateway = await found.client.get("/v1/cdrs", params={"gateway": "gw1"})
        assert len(by_gateway.json()["items"]) == 5
        summary = await found.client.get("/v1/cdrs/summary", params={"by": "disposition"})
        rows = {row["disposition"]: row for row in summary.json()["items"]}
        assert rows["answered"]["attempts"] == 5
        assert rows["answered"]["asr"] == 1.0
        assert rows["answered"]["acd_seconds"] == 61.5
        assert rows["answered"]["minutes"] == round(5 * 61.5 / 60, 3)
        assert rows["busy"]["answered"] == 0
        csv = await found.client.get("/v1/cdrs.csv", params={"gateway": "gw1"})
        lines = csv.text.splitlines()
        assert lines[0].startswith("call_id,from_tag,state,disposition")
        assert len(lines) == 6
        assert "gw0:486 gw1:200" in lines[1]


async def test_open_calls_are_listed_and_their_legs_given(
    namespace: str, accounting_url: str
) -> None:
    live = with_legs(answered_call("live", talk=10))[:-1]  # answered, no BYE yet
    ended = with_legs(answered_call("ended", talk=10))
    ringing = answered_call("ringing")[:4]
    b2b = answered_call("b2b", talk=10)[:-1]  # a B2BUA call: its answer names leg B, no legs
    b2b[0] = b2b[0].model_copy(update={"mode": "b2bua"})
    b2b[4] = b2b[4].model_copy(update={"b2bua_leg_call_id": "leg-b"})
    async with deployment(namespace, accounting_url) as found:
        await publish(found, live + ended + ringing + b2b)
        for call_id, events in (("live", live), ("ended", ended), ("ringing", ringing)):
            await settled(found, call_id, events)
        await settled(found, "b2b", b2b)
        listed = (await found.client.get("/v1/open-calls")).json()
        assert sorted(item["call_id"] for item in listed["items"]) == ["b2b", "live", "ringing"]
        assert listed["next_cursor"] is None
        one = (await found.client.get("/v1/open-calls", params={"limit": "1"})).json()
        assert len(one["items"]) == 1 and one["next_cursor"] is not None
        nobody = await found.client.get("/v1/open-calls", params={"subscriber": "sip:x@y"})
        assert nobody.json()["items"] == []
        no_peer = await found.client.get("/v1/open-calls", params={"peer": "carrier-x"})
        assert no_peer.json()["items"] == []
        [dialog] = (await found.client.get("/v1/dialogs/live")).json()["items"]
        answered = next(e for e in live if isinstance(e, CallAnswered))
        assert dialog["state"] == "open"
        assert dialog["dialog"] == {
            "to_tag": "tt",
            "edge": "edge-a",
            "cseq": 7,
            "caller": answered.caller_leg and answered.caller_leg.model_dump(mode="json"),
            "callee": answered.callee_leg and answered.callee_leg.model_dump(mode="json"),
            "b2bua_leg_call_id": None,
        }
        [b2bua] = (await found.client.get("/v1/dialogs/b2b")).json()["items"]
        assert b2bua["mode"] == "b2bua"
        assert b2bua["dialog"] == {
            "to_tag": "tt",
            "edge": "edge-a",
            "cseq": None,
            "caller": None,
            "callee": None,
            "b2bua_leg_call_id": "leg-b",
        }
        [over] = (await found.client.get("/v1/dialogs/ended")).json()["items"]
        assert over["state"] == "complete" and over["dialog"] is not None
        [unanswered] = (await found.client.get("/v1/dialogs/ringing")).json()["items"]
        assert unanswered["dialog"] is None


@pytest.mark.parametrize(
    "case",
    [
        ("/v1/open-calls", {"cursor": "!!!"}, 400, "bad cursor"),
        ("/v1/open-calls", {"limit": "0"}, 422, "greater than or equal to 1"),
        ("/v1/open-calls", {"gateway": "x" * 300}, 422, "at most 256"),
        ("/v1/dialogs/nothing-here", {}, 404, "no record"),
        ("/v1/cdrs", {"since": "yesterday"}, 422, "datetime"),
        ("/v1/cdrs", {"limit": "100000"}, 422, "less than or equal to 1000"),
        ("/v1/cdrs", {"limit": "0"}, 422, "greater than or equal to 1"),
        ("/v1/cdrs", {"cursor": "!!!"}, 400, "bad cursor"),
        ("/v1/cdrs", {"cursor": "WzEsMl0"}, 400, "bad cursor"),
        ("/v1/cdrs", {"disposition": "maybe"}, 422, "answered"),
        ("/v1/cdrs", {"caller": "x" * 300}, 422, "at most 256"),
        ("/v1/cdrs", {"since": "2026-01-02", "until": "2026-01-01"}, 422, "after since"),
        ("/v1/cdrs/summary", {"by": "colour"}, 422, "gateway"),
        ("/v1/cdrs.csv", {"until": "1e400"}, 422, "until"),
        ("/v1/cdrs/nothing-here", {}, 404, "no record"),
    ],
)
@pytest.mark.parametrize("accounting_url", ["sqlite"], indirect=True)
async def test_hostile_input_is_a_clear_4xx(
    namespace: str, accounting_url: str, case: tuple[str, dict[str, str], int, str]
) -> None:
    path, params, status, message = case
    async with deployment(namespace, accounting_url) as found:
        response = await found.client.get(path, params=params)
        assert response.status_code == status, response.text
        assert message in orjson.dumps(response.json()).decode()
