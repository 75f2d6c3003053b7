"""The health service against the real RabbitMQ and Redis, probing real far ends (SIPp, UDP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import pytest

from deploy.labs.ports import free_port
from shared.contracts.edge import DestinationFailed, GatewayFailed
from shared.contracts.health import DispatcherSetUpserted, TargetState
from shared.hep.codec import TYPE_SIP
from shared.store import Store
from tests.services.edge.hep_support import Collector
from tests.services.edge.support import LOOPBACK
from tests.services.health.support import (
    FAST,
    Instance,
    Sipp,
    Tap,
    no_probes_for,
    probe_gap,
    publish,
    responder,
    seed_gateways,
    start_instance,
    tap,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.wire]

DOWN_WITHIN = FAST.probe_interval * FAST.failures_to_down + 1.0
SETTLE = 10.0
"""Generous bound for things with no stated deadline (an answer on a shared machine)."""


@pytest.fixture
async def events(namespace: str, redis_store: Store) -> AsyncIterator[Tap]:
    async with tap(namespace) as found:
        yield found


def is_state(name: str) -> Callable[[TargetState], bool]:
    return lambda state: state.state == name


async def test_dead_gateway_goes_down_in_time_and_comes_back_when_sipp_answers(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    await seed_gateways(redis_store, {"1": f"sip:127.0.0.1:{port}"})
    instance = await start_instance(namespace)
    try:
        first = await events.wait_for("gw:1", lambda s: True, SETTLE)
        down = await events.wait_for("gw:1", is_state("down"), DOWN_WITHIN + SETTLE)
        assert down.since - first.since <= DOWN_WITHIN
        assert down.reason == "timeout"
        sipp = Sipp(port)
        try:
            up = await events.wait_for(
                "gw:1", lambda s: s.state == "up" and s.since > down.since, SETTLE
            )
            assert up.reason == "answered 200"
            listed = (await instance.client.get("/v1/targets")).json()["items"]
            (item,) = listed
            assert (item["target"], item["state"], item["gateway_id"]) == ("gw:1", "up", "1")
            assert item["rtt_ms"] is not None and item["srtt_ms"] is not None
        finally:
            sipp.stop()
    finally:
        await instance.stop()


async def test_operator_disable_is_kept_by_probes_and_restarts(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    far_end = await responder(port)
    await seed_gateways(redis_store, {"7": f"sip:127.0.0.1:{port}"})
    instance = await start_instance(namespace)
    try:
        await instance.probed("gw:7", SETTLE)
        quiet = 2 * max(await probe_gap(far_end, SETTLE), FAST.probe_interval)
        response = await instance.client.post("/v1/targets/gw:7:disable")
        assert response.status_code == 200
        assert response.json()["state"] == "disabled"
        await events.wait_for("gw:7", is_state("disabled"), SETTLE)
        probes_when_disabled = far_end.probes
        await no_probes_for(far_end, quiet)  # two gaps as measured while it was enabled
        assert (await instance.client.get("/v1/targets/gw:7")).json()["state"] == "disabled"
    finally:
        await instance.stop()
    instance = await start_instance(namespace, "h2")
    try:
        await no_probes_for(far_end, quiet)
        assert (await instance.client.get("/v1/targets/gw:7")).json()["state"] == "disabled"
        assert far_end.probes == probes_when_disabled
        enabled = await instance.client.post("/v1/targets/gw:7:enable")
        assert enabled.json()["state"] == "probing"
        since = enabled.json()["since"]
        up = await events.wait_for("gw:7", lambda s: s.state == "up" and s.since > since, SETTLE)
        assert up.reason == "answered 200"
        assert far_end.probes > probes_when_disabled
    finally:
        await instance.stop()
        far_end.close()


async def test_unknown_target_is_404(namespace: str, redis_store: Store) -> None:
    instance = await start_instance(namespace)
    try:
        assert (await instance.client.post("/v1/targets/gw:nope:disable")).status_code == 404
        assert (await instance.client.get("/v1/targets/gw:nope")).status_code == 404
    finally:
        await instance.stop()


async def test_edge_failure_puts_the_gateway_into_probing_at_once(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    far_end = await responder(port)
    await seed_gateways(redis_store, {"3": f"sip:127.0.0.1:{port}"})
    config = FAST.model_copy(update={"probe_mode": "while_down"})
    instance = await start_instance(namespace, config=config)
    try:
        await events.wait_for("gw:3", is_state("up"), SETTLE)
        quiet = 3 * FAST.probe_interval
        await no_probes_for(far_end, quiet)  # while_down: an up gateway is not probed
        assert far_end.probes == 0
        failed = GatewayFailed(
            gateway_id="3",
            address=f"sip:127.0.0.1:{port}",
            reason="timeout",
            status=408,
            method="INVITE",
            call_id="c1",
        )
        reported = time.monotonic()
        await publish(namespace, "edge", failed)
        probing = await events.wait_for("gw:3", is_state("probing"), SETTLE)
        assert probing.reason == "edge: timeout (408)"
        back = await events.wait_for(
            "gw:3", lambda s: s.state == "up" and s.since >= probing.since, SETTLE
        )
        assert back.reason == "answered 200"
        assert far_end.probes == 1
        # The control of the quiet check above: a target in doubt was probed well within it.
        assert far_end.times[0] - reported < quiet
    finally:
        await instance.stop()
        far_end.close()


async def test_503_with_retry_after_holds_the_gateway_down(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    far_end = await responder(port)
    await seed_gateways(redis_store, {"4": f"sip:127.0.0.1:{port}"})
    instance = await start_instance(namespace)
    try:
        await events.wait_for("gw:4", is_state("up"), SETTLE)
        quiet = 2 * max(await probe_gap(far_end, SETTLE), FAST.probe_interval)
        failed = GatewayFailed(
            gateway_id="4",
            address=f"sip:127.0.0.1:{port}",
            reason="status",
            status=503,
            retry_after=60,
            method="INVITE",
            call_id="c2",
        )
        await publish(namespace, "edge", failed)
        down = await events.wait_for("gw:4", is_state("down"), SETTLE)
        assert down.until is not None and down.until - down.since == pytest.approx(60)
        await no_probes_for(far_end, quiet)  # two gaps as measured before the 503
        assert (await instance.client.get("/v1/targets/gw:4")).json()["state"] == "down"
    finally:
        await instance.stop()
        far_end.close()


async def test_policy_never_brings_a_probed_down_gateway_back_up(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()  # nothing answers there: the probes take it down
    await seed_gateways(redis_store, {"8": f"sip:127.0.0.1:{port}"})
    instance = await start_instance(namespace)
    try:
        down = await events.wait_for("gw:8", is_state("down"), DOWN_WITHIN + SETTLE)
        response = await instance.client.put("/v1/targets/gw:8/policy", json={"mode": "never"})
        assert response.status_code < 300, response.text
        up = await events.wait_for(
            "gw:8", lambda s: s.state == "up" and s.since > down.since, SETTLE
        )
        assert up.reason == "not probed (mode never)"
        view = (await instance.client.get("/v1/targets/gw:8")).json()
        assert (view["state"], view["policy"]["mode"]) == ("up", "never")
    finally:
        await instance.stop()


async def test_edge_failure_of_a_dispatcher_destination_holds_it_down(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    far_end = await responder(port)
    uri = f"sip:127.0.0.1:{port}"
    instance = await start_instance(namespace)
    try:
        body = {"destinations": [{"uri": uri}]}
        assert (await instance.client.put("/v1/dispatcher/sets/farm", json=body)).is_success
        target = f"ds:farm:{uri}"
        await events.wait_for(target, is_state("up"), SETTLE)
        failed = DestinationFailed(
            set_id="farm",
            address=uri,
            reason="status",
            status=503,
            retry_after=30,
            method="INVITE",
            call_id="c3",
        )
        await publish(namespace, "edge", failed)
        down = await events.wait_for(target, is_state("down"), SETTLE)
        assert down.reason == "edge: status (503), Retry-After 30s"
        assert down.until is not None and down.until - down.since == pytest.approx(30)
    finally:
        await instance.stop()
        far_end.close()


async def test_gateways_follow_routing_events(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    from shared.contracts.routing import TableChanged
    from shared.routing_table.changes import Change, ChangeItem
    from shared.routing_table.model import Gateway

    port = free_port()
    far_end = await responder(port)
    instance = await start_instance(namespace)
    try:
        assert (await instance.client.get("/v1/targets")).json()["items"] == []
        change = Change("upsert", "gateway", "9", Gateway(address=f"sip:127.0.0.1:{port}"))
        await seed_gateways(redis_store, {"9": f"sip:127.0.0.1:{port}"})
        await publish(
            namespace, "routing", TableChanged(version=1, changes=(ChangeItem.of(change),))
        )
        probed = await instance.probed("gw:9", SETTLE)
        assert probed["rtt_ms"] is not None  # answered: the far end, not a timeout
        quiet = 2 * max(await probe_gap(far_end, SETTLE), FAST.probe_interval)
        delete = Change("delete", "gateway", "9")
        await publish(
            namespace, "routing", TableChanged(version=2, changes=(ChangeItem.of(delete),))
        )
        await events.until(lambda: bool(events.of_type("health.target.removed")), SETTLE)
        assert (await instance.client.get("/v1/targets")).json()["items"] == []
        await no_probes_for(far_end, quiet)  # a deleted gateway is no longer probed
    finally:
        await instance.stop()
        far_end.close()


async def test_dispatcher_sets_are_stored_announced_and_probed(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    live, dead = free_port(), free_port()
    far_end = await responder(live, status=404)
    instance = await start_instance(namespace)
    try:
        body = {
            "algorithm": "weighted_round_robin",
            "destinations": [
                {"uri": f"sip:127.0.0.1:{live}", "weight": 2, "attributes": "box=a"},
                {"uri": f"sip:127.0.0.1:{dead}", "priority": 5},
            ],
        }
        response = await instance.client.put("/v1/dispatcher/sets/asterisk", json=body)
        assert response.status_code == 200
        got = (await instance.client.get("/v1/dispatcher/sets/asterisk")).json()
        assert got["destinations"][0]["weight"] == 2 and got["destinations"][1]["priority"] == 5
        upserted = DispatcherSetUpserted.routing_key
        await events.until(lambda: bool(events.of_type(upserted)), SETTLE)
        announced = events.of_type(upserted)
        assert announced[0].payload(DispatcherSetUpserted).set.destinations[0].attributes == "box=a"
        live_id, dead_id = f"ds:asterisk:sip:127.0.0.1:{live}", f"ds:asterisk:sip:127.0.0.1:{dead}"
        await events.wait_for(dead_id, is_state("down"), DOWN_WITHIN + SETTLE)
        alive = await instance.probed(live_id, SETTLE)
        assert alive["state"] == "up"  # a 404 proves it alive unless codes are restricted
        policy = await instance.client.put(
            f"/v1/targets/{quote(live_id)}/policy", json={"accepted_codes": [200]}
        )
        assert policy.status_code == 200, policy.text
        assert policy.json()["policy"]["accepted_codes"] == [200]
        await events.wait_for(live_id, is_state("down"), DOWN_WITHIN + SETTLE)
        items = {i["target"]: i for i in (await instance.client.get("/v1/targets")).json()["items"]}
        assert items[live_id]["set_id"] == "asterisk" and items[live_id]["kind"] == "destination"
        assert (await instance.client.delete("/v1/dispatcher/sets/asterisk")).status_code == 200
        assert (await instance.client.get("/v1/dispatcher/sets/asterisk")).status_code == 404
        bad = await instance.client.put("/v1/dispatcher/sets/x", json={"destinations": []})
        assert bad.status_code == 422
        hostile = {"destinations": [{"uri": "sip:192.0.2.9"}], "mode": "relay"}
        refused = await instance.client.put("/v1/dispatcher/sets/x", json=hostile)
        assert refused.status_code == 422 and "mode" in refused.text, refused.text
    finally:
        await instance.stop()
        far_end.close()


async def test_tcp_targets_are_probed_over_tcp(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    from shared.sip.framing import StreamFramer
    from shared.sip.message import Request, parse_message
    from shared.sip.responses import make_response

    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for message in framer.feed(data):
                if isinstance(message, bytes):
                    request = parse_message(message, stream=True)
                    assert isinstance(request, Request)
                    seen.append(request.top_via.transport)
                    writer.write(make_response(request, 200).to_bytes())

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await seed_gateways(redis_store, {"t": f"sip:127.0.0.1:{port};transport=tcp"})
    instance = await start_instance(namespace)
    try:
        state = await instance.probed("gw:t", SETTLE)
        assert state["state"] == "up" and seen[0] == "TCP"
    finally:
        await instance.stop()
        server.close()


async def test_states_survive_in_redis_as_records(
    namespace: str, redis_store: Store, events: Tap
) -> None:
    port = free_port()
    await seed_gateways(redis_store, {"5": f"sip:127.0.0.1:{port}"})
    instance: Instance = await start_instance(namespace)
    try:
        await events.wait_for("gw:5", is_state("down"), DOWN_WITHIN + SETTLE)
        raw = await redis_store.redis.hget(redis_store.key("health", "states"), "gw:5")
        assert raw is not None
        assert TargetState.model_validate_json(raw).state == "down"
    finally:
        await instance.stop()


async def test_probes_go_to_the_hep_collector_the_variables_name(
    namespace: str, redis_store: Store, events: Tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector.open()
    monkeypatch.setenv("CALLMESH_HEP_DESTINATIONS", f"udp:{LOOPBACK}:{collector.port}")
    monkeypatch.setenv("CALLMESH_HEP_CAPTURE_ID", "42")
    port = free_port()
    far_end = await responder(port)
    await seed_gateways(redis_store, {"1": f"sip:{LOOPBACK}:{port}"})
    instance = await start_instance(namespace)

    def seen(first_line: bytes, source_port: int) -> bool:
        return any(
            p.payload.startswith(first_line) and p.source[1] == source_port
            for p in collector.packets
            if p.protocol_type == TYPE_SIP and p.capture_id == 42
        )

    try:
        await events.wait_for("gw:1", is_state("up"), SETTLE)
        await wait_until(lambda: seen(b"SIP/2.0 200 ", port), SETTLE)
        sent = [p for p in collector.packets if p.destination == (LOOPBACK, port)]
        assert sent and all(p.payload.startswith(b"OPTIONS ") for p in sent)
    finally:
        await instance.stop()
        far_end.close()
        collector.close()
