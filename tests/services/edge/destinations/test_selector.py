"""A rule's dispatcher set through the sans-IO proxy: order, health, failover, reports."""

from __future__ import annotations

from services.edge import metrics
from services.edge.destinations import ActiveCalls, DispatchSets, SetSelector
from services.edge.proxy.actions import Publish, Send
from shared.contracts.edge import DestinationFailed, GatewayFailed
from shared.sip.message import Request, parse_message
from tests.services.edge.destinations.support import BOX1, BOX1_URI, BOX2, BOX2_URI, farm, farm_run
from tests.services.edge.proxy.test_core import GW2, answer, invite, only_request, statuses


def test_set_destinations_come_first_in_the_sets_order_then_the_gateways() -> None:
    run, _sets, _calls = farm_run()
    first = only_request(run.send(invite()), BOX1)
    assert first.uri_text == f"sip:14075551234@{BOX1.host}"
    actions = run.send(answer(first, 503, "Retry-After: 20\r\n"), BOX1)
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, DestinationFailed)
    assert (event.set_id, event.address, event.status, event.retry_after) == (
        "farm",
        BOX1_URI,
        503,
        20,
    )
    second = only_request(actions, BOX2)
    assert second.uri_text == f"sip:14075551234@{BOX2.host}:5060"
    actions = run.send(answer(second, 500), BOX2)
    assert only_request(actions, GW2).method == "INVITE"
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, DestinationFailed) and event.address == BOX2_URI


def test_down_and_disabled_destinations_are_skipped_probing_ones_go_last() -> None:
    run, sets, _calls = farm_run()
    sets.set_state("farm", BOX1_URI, "down")
    assert only_request(run.send(invite()), BOX2).method == "INVITE"

    run, sets, _calls = farm_run()
    sets.set_state("farm", BOX1_URI, "probing")
    second = only_request(run.send(invite()), BOX2)
    assert only_request(run.send(answer(second, 503), BOX2), BOX1).method == "INVITE"

    run, sets, _calls = farm_run()
    sets.set_state("farm", BOX1_URI, "disabled")
    sets.set_state("farm", BOX2_URI, "down")
    assert only_request(run.send(invite()), GW2).method == "INVITE"


def test_a_set_the_edge_does_not_know_leaves_the_gateways() -> None:
    run, sets, _calls = farm_run()
    sets.delete("farm")
    assert only_request(run.send(invite()), GW2).method == "INVITE"


def test_a_failing_gateway_is_still_reported_as_a_gateway() -> None:
    run, sets, _calls = farm_run()
    sets.delete("farm")
    forwarded = only_request(run.send(invite()), GW2)
    actions = run.send(answer(forwarded, 503), GW2)
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, GatewayFailed) and event.gateway_id == "2"
    assert statuses(actions) == [500]


def test_hash_from_user_sends_one_caller_to_one_box_whatever_the_call() -> None:
    sets = DispatchSets()
    sets.put("farm", farm("hash_from_user"))
    selector = SetSelector(sets, ActiveCalls())
    chosen = set()
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        boxes = set()
        for call in range(5):
            data = invite().replace(b"Call-ID: call-1", f"Call-ID: c{call}".encode())
            request = parse_message(data.replace(b"sip:alice@", f"sip:{user}@".encode()))
            assert isinstance(request, Request)
            boxes.add(next(iter(selector.destinations(("farm",), request))))
        assert len(boxes) == 1
        chosen |= boxes
    assert len(chosen) == 2  # and the callers spread over both boxes


def test_the_proxy_hashes_each_call_by_its_own_caller() -> None:
    """The proxy hands the request to the set: callers spread as the selector spreads them."""
    run, _sets, _calls = farm_run(farm("hash_from_user"))
    reached = set()
    for n, user in enumerate(("alice", "bob", "carol", "dave", "erin", "frank")):
        data = invite(branch=f"z9hG4bKh{n}").replace(b"call-1", f"call-h{n}".encode())
        actions = run.send(data.replace(b"sip:alice@", f"sip:{user}@".encode()))
        reached |= {a.destination for a in actions if isinstance(a, Send)} & {BOX1, BOX2}
    assert reached == {BOX1, BOX2}


def test_a_new_version_of_a_set_replaces_the_old_one() -> None:
    sets = DispatchSets()
    sets.put("farm", farm())
    kept = sets.dispatcher("farm")
    sets.put("farm", farm())
    assert sets.dispatcher("farm") is kept  # unchanged: the rotation goes on
    sets.put("farm", farm("round_robin"))
    replaced = sets.dispatcher("farm")
    assert replaced is not kept and replaced is not None
    assert replaced.set.algorithm == "round_robin"
    sets.replace({})
    assert sets.dispatcher("farm") is None


def test_a_destinations_failure_is_counted_once() -> None:
    run, _sets, _calls = farm_run()
    before = metrics.DESTINATION_FAILURES["farm", BOX1_URI]
    first = only_request(run.send(invite()), BOX1)
    run.send(answer(first, 503), BOX1)
    assert metrics.DESTINATION_FAILURES["farm", BOX1_URI] == before + 1
