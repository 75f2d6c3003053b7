"""``POST /v1/calls/{id}:hangup`` on the wire: a SIPp caller's call to a SIPp gateway through a
real edge, hung up from the API, both SIPp ending on the edge's BYE; and the endpoints attacked.

The platform is the accounting wire tests' (`tests.services.accounting.wire`: the
seed table, RabbitMQ, PostgreSQL, an accounting instance), its edge restarted
with ``CALLMESH_EDGE_ACCOUNTING_URL`` naming that instance and
``CALLMESH_FRAUD_HANGUP`` on (a fraud block hangs up the account's live calls).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.labs.ports import free_port
from deploy.processes import stop_process
from tests.services.accounting.wire import ROUTE, Platform, running_platform, traced_calls
from tests.services.edge.support import LOOPBACK, Edge, Sipp, sipp, stop_all_sipp, wait_bound

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("hangup-wire")) as running:
        yield running


@pytest.fixture(scope="module")
def edge(platform: Platform) -> Iterator[Edge]:
    """The platform's edge again, told where the accounting service's API is."""
    with control_edge(platform) as control:
        yield control


@contextlib.contextmanager
def control_edge(platform: Platform, **settings: str) -> Iterator[Edge]:
    """The platform's edge restarted with call control on (and `settings`, as env vars),
    restarted as it was afterwards."""
    first = platform.edge
    assert first.process is not None
    stop_process(first.process)
    _, port = platform.accounting.running["acct-1"]
    env = dict(
        first.env,
        CALLMESH_EDGE_ACCOUNTING_URL=f"http://{LOOPBACK}:{port}",
        CALLMESH_FRAUD_HANGUP="true",
        **settings,
    )
    (platform.workdir / "control").mkdir(exist_ok=True)
    control = Edge(
        first.namespace,
        first.sip_port,
        first.http_port,
        first.routing_port,
        platform.workdir / "control",
        env,
    )
    control.start()
    try:
        yield control
    finally:
        assert control.process is not None
        stop_process(control.process)
        first.start()


@pytest.fixture(autouse=True)
def no_sipp_left() -> Iterator[None]:
    yield
    stop_all_sipp()


def ended_by_the_edge(
    platform: Platform, api: httpx.Client, call_id: str, caller: Sipp, gateway: Sipp
) -> dict[str, Any]:
    """The edge's hang-up of an answered call: both SIPp ends content with one BYE each, the
    record complete, answered and hung up by the edge (returned), and a second hang-up 409."""
    assert caller.wait() == 0, caller.errors()
    assert gateway.wait() == 0, gateway.errors()
    assert caller.received("BYE") == 1 and gateway.received("BYE") == 1
    [record] = platform.accounting.settled({call_id}, time.time() - 60)[call_id]
    assert (record["state"], record["disposition"], record["hangup_side"]) == (
        "complete",
        "answered",
        "edge",
    )
    again = api.post(f"/v1/calls/{call_id}:hangup")
    assert again.status_code == 409 and "ended already" in again.text
    return record


def _until(predicate: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not {what} within {timeout} s")


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_a_proxied_call_hung_up_from_the_api_ends_both_ways(
    platform: Platform, edge: Edge, transport: str
) -> None:
    """Over UDP, and with the caller on TCP (its BYE on the caller's own connection)."""
    port = platform.ports["seed-answer"]
    gateway = sipp(platform.workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(
        platform.workdir,
        "caller_takes_bye",
        free_port(),
        remote=edge.sip_port,
        transport=transport,
        args=("-s", ROUTE["answer"].number),
    )
    _until(lambda: gateway.received("ACK") == 1, "ACKed")
    [call_id] = _until(lambda: list(traced_calls(caller)), "traced")
    with edge.http() as api:
        listed = _until(lambda: _live(api, gateway="seed-answer"), "listed as live")
        assert [item["call_id"] for item in listed] == [call_id]
        assert _live(api, subscriber="sip:nobody@example.com") == []
        assert _live(api, peer="nobody") == []
        reply = api.post(f"/v1/calls/{call_id}:hangup")
        assert reply.status_code == 200, reply.text + edge.log()
        byes = {bye["to"]: bye["status"] for bye in reply.json()["byes"]}
        assert byes == {"caller": 200, "callee": 200}
        ended_by_the_edge(platform, api, call_id, caller, gateway)
        assert _live(api, gateway="seed-answer") == []


def test_a_b2bua_call_hung_up_from_the_api_ends_both_legs_from_the_engine(
    platform: Platform, edge: Edge
) -> None:
    """The engine holds the pair: its BYEs carry each leg's own Call-ID, tags and next CSeq."""
    port = free_port()
    edge.put(
        {
            "gateways/b2b-hangup": {"address": f"sip:{LOOPBACK}:{port}"},
            "rules/b2b-hangup": {"prefix": "2401", "gateways": ["b2b-hangup"], "mode": "b2bua"},
        }
    )
    gateway = sipp(platform.workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(
        platform.workdir,
        "caller_takes_bye",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "24015550001"),
    )
    _until(lambda: gateway.received("ACK") == 1, "ACKed")
    [call_id] = _until(lambda: list(traced_calls(caller)), "traced")
    with edge.http() as api:
        listed = _until(lambda: _live(api, gateway="b2b-hangup"), "listed as live")
        assert [(item["call_id"], item["mode"]) for item in listed] == [(call_id, "b2bua")]
        reply = api.post(f"/v1/calls/{call_id}:hangup")
        assert reply.status_code == 200, reply.text + edge.log()
        assert reply.json()["mode"] == "b2bua"
        assert {bye["to"] for bye in reply.json()["byes"]} == {"caller", "callee"}
        record = ended_by_the_edge(platform, api, call_id, caller, gateway)
        assert call_id not in gateway.messages()  # leg B's BYE: leg B's own Call-ID
        assert record["mode"] == "b2bua" and record["b2bua_leg_call_id"] in gateway.messages()


def test_a_fraud_block_hangs_up_the_accounts_live_call(platform: Platform, edge: Edge) -> None:
    """Two calls at once block the caller's account: the second is refused (403) and the
    first, answered before, gets a BYE from the edge at both ends."""
    number = ROUTE["answer"].number
    rule: dict[str, object] = {
        "caller": f"subscriber:caller@{LOOPBACK}",  # the SIPp caller's From
        "prefixes": [number[:4]],
        "concurrent": {"critical": 2},
        "block": "account",
    }
    port = platform.ports["seed-answer"]
    gateway = sipp(platform.workdir, "gateway", port)
    wait_bound(port)
    edge.put({"fraud/rules/two-at-once": rule})
    try:
        first = sipp(
            platform.workdir,
            "caller_takes_bye",
            free_port(),
            remote=edge.sip_port,
            args=("-s", number),
        )
        [call_id] = _until(lambda: list(traced_calls(first)), "traced")
        with edge.http() as api:
            _until(lambda: _live(api, gateway="seed-answer"), "listed as live")
        second = sipp(
            platform.workdir, platform.refused(403), free_port(), remote=edge.sip_port,
            args=("-s", number),
        )  # fmt: skip # the caller's arguments on one line
        assert second.wait() == 0, second.errors() + edge.log()
        assert first.wait() == 0, first.errors() + edge.log()
        assert gateway.wait() == 0, gateway.errors()
        assert first.received("BYE") == 1 and gateway.received("BYE") == 1
        [record] = platform.accounting.settled({call_id}, time.time() - 60)[call_id]
        assert (record["disposition"], record["hangup_side"]) == ("answered", "edge")
        assert "live calls hung up" in edge.log()
    finally:
        with edge.http(edge.routing_port) as routing:
            assert routing.delete("/v1/fraud/rules/two-at-once").status_code in (200, 204)
            for block in routing.get("/v1/fraud/state").json()["blocks"]:
                routing.post(f"/v1/fraud/blocks/{block['id']}:unblock").raise_for_status()


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/v1/calls/never-seen-call:hangup", 404, "no record"),
        ("/v1/calls/a%0D%0AX-Evil:%201:hangup", 404, "Not Found"),  # no route matches a line break
        ("/v1/calls/a%20b:hangup", 422, "pattern"),
        ("/v1/calls/" + "x" * 600 + ":hangup", 422, "at most 512"),
        ("/v1/calls/..%2F..%2Fcdrs:hangup", 404, "no record"),
        ("/v1/calls/%00:hangup", 422, "pattern"),
    ],
)
def test_hostile_hangups_are_a_clear_4xx(edge: Edge, path: str, status: int, says: str) -> None:
    with edge.http() as api:
        reply = api.post(path)
    assert reply.status_code == status, reply.text
    assert says in reply.text
    assert "Traceback" not in edge.log()


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"cursor": "!!!"}, 400, "bad cursor"),
        ({"limit": "0"}, 422, "greater than or equal to 1"),
        ({"gateway": "x" * 300}, 422, "at most 256"),
    ],
)
def test_a_hostile_listing_is_a_clear_4xx(
    edge: Edge, params: dict[str, str], status: int, says: str
) -> None:
    with edge.http() as api:
        reply = api.get("/v1/calls", params=params)
    assert reply.status_code == status, reply.text
    assert says in reply.text


def _live(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    reply = api.get("/v1/calls", params=params)
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return [item for item in items if item["answer_at"] is not None]
