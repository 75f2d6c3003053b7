"""The call events of calls to and from subscribers: contacts, authentication, lookups."""

from __future__ import annotations

import pytest

from services.edge.location import BindingsQuery, Ha1Query, NonceCountQuery, SubscriberQuery
from services.edge.proxy.actions import AuthFailed, Lookup
from services.edge.proxy.call_events import CallEvents
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallFailed,
    CallStarted,
)
from shared.sip.auth.digest import compute_ha1
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import published, without_legs
from tests.services.edge.proxy.test_core import EDGE, GW1, answer, only_request, sent_to
from tests.services.edge.proxy.test_subscribers import (
    BOB,
    CARRIER,
    DOMAIN,
    PASSWORD,
    PHONE,
    TABLET,
    Run,
    authorized_call,
    call,
    invites_to,
    run,
)

__all__ = ["run"]  # the fixture, shared with test_subscribers

ALICE = Destination("udp", "192.0.2.50", 5060)
NUMBER = f"sip:14075551234@{EDGE}"
KEY = {"call_id": "call-7", "edge": "edge-a", "from_tag": "c1", "at": 100.0}
CARRIERS_CALL = {
    **KEY,
    "caller": f"sip:carrier@{DOMAIN}",
    "callee_dialled": "bob",
    "callee": BOB,
    "source": "198.51.100.99:5060",
    "transport": "udp",
}
UNKNOWN_CALLEE = {**CARRIERS_CALL, "callee": "bob"}
"""A call started before its callee was looked up: the callee as dialled."""


@pytest.fixture(autouse=True)
def call_events_on(run: Run) -> None:
    run.proxy.call_events = CallEvents("edge-a")


def test_a_call_to_a_subscriber_names_the_aor_and_each_contact_tried(run: Run) -> None:
    actions = run.send(call())
    assert published(actions) == [CallStarted(**CARRIERS_CALL)]
    phone, tablet = invites_to(actions, PHONE, TABLET)
    run.send(answer(tablet, 180), TABLET)
    contact = {"target": f"sip:bob@{PHONE.host}:5060", "target_kind": "contact"}
    address = {"address": f"{PHONE.host}:5060", "sent_at": 100.0}
    assert without_legs(published(run.send(answer(phone, 200), PHONE))) == [
        BranchTried(**KEY, **contact, **address, status=200, reason="Whatever"),
        CallAnswered(**KEY, **contact, address=address["address"], to_tag="gw"),
    ]
    tablets = {"target": f"sip:bob@{TABLET.host}:5060", "address": f"{TABLET.host}:5060"}
    assert published(run.send(answer(tablet, 487), TABLET)) == [
        BranchTried(
            **KEY, **tablets, target_kind="contact", sent_at=100.0, status=487, reason="Whatever"
        ),
    ]


def test_a_subscriber_without_bindings_is_unrouted(run: Run) -> None:
    run.directory.learn(BindingsQuery(BOB), (), run.now)
    run.directory.learn(SubscriberQuery("bob", DOMAIN), True, run.now)
    assert published(run.send(call())) == [
        CallStarted(**CARRIERS_CALL),
        CallFailed(
            **KEY, status=480, reason="Temporarily Unavailable", origin="edge", cause="unrouted"
        ),
    ]


def test_a_challenge_is_no_call_and_the_authenticated_call_names_its_subscriber(
    run: Run,
) -> None:
    run.directory.learn(
        Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, PASSWORD), run.now
    )
    actions = run.send(call(NUMBER, caller="alice"), ALICE)
    assert published(actions) == []  # 407: the caller asks again, same Call-ID and tag
    first = authorized_call(run, sent_to(actions, ALICE)[-1], branch="z9hG4bKa2")
    actions = run.send(first, ALICE)
    claim = NonceCountQuery(_nonce(first), 1)
    actions = run.resolve(actions, {claim: True})
    assert only_request(actions, GW1).method == "INVITE"
    [event] = published(actions)
    assert isinstance(event, CallStarted)
    assert (event.subscriber, event.caller, event.source) == (
        f"sip:alice@{DOMAIN}",
        f"sip:alice@{DOMAIN}",
        f"{ALICE.host}:5060",
    )
    assert (event.callee, event.rule, event.group) == ("14075551234", "r1407", "0")


def test_a_wrong_password_is_a_call_the_edge_rejected(run: Run) -> None:
    run.directory.learn(Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, "x"), 100)
    challenge = sent_to(run.send(call(NUMBER, caller="alice"), ALICE), ALICE)[-1]
    first = authorized_call(run, challenge, branch="z9hG4bKa2")
    actions = run.resolve(run.send(first, ALICE), {NonceCountQuery(_nonce(first), 1): True})
    [failed] = [a for a in actions if isinstance(a, AuthFailed)]
    assert published(actions) == []  # not yet: the 403 may be held back
    run.now += 2  # the 403 held back, as for a guesser
    started, refused = published(run.proxy.refuse(failed.server, run.now))
    assert isinstance(started, CallStarted) and started.callee_dialled == "14075551234"
    assert started.at == 100.0  # when the INVITE came, not when it was answered
    assert refused == CallFailed(
        **{**KEY, "at": 102.0}, status=403, reason="Forbidden", origin="edge", cause="rejected"
    )


def test_a_call_cancelled_while_its_callee_is_looked_up_still_starts(run: Run) -> None:
    run.directory.forget_all()
    lookups = [a for a in run.send(call()) if isinstance(a, Lookup)]
    assert lookups
    cancel = call().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    run.now += 1
    events = published(run.send(cancel))
    # When the INVITE came (not the CANCEL), the callee not known yet: as dialled.
    assert events == [CallStarted(**UNKNOWN_CALLEE), CallCancelled(**{**KEY, "at": 101.0})]
    assert published(run.proxy.resume(lookups[0].server, run.now)) == []


def test_a_call_whose_lookup_failed_is_a_call_the_edge_could_not_route(run: Run) -> None:
    run.directory.forget_all()
    [lookup] = [a for a in run.send(call()) if isinstance(a, Lookup)]
    run.now += 1
    actions = run.proxy.resume(lookup.server, run.now, failed=True)
    [final] = sent_to(actions, CARRIER)
    assert final.startswith(b"SIP/2.0 503 Service Unavailable (location)")
    assert published(actions) == [
        CallStarted(**UNKNOWN_CALLEE),
        CallFailed(
            **{**KEY, "at": 101.0},
            status=503,
            reason="Service Unavailable (location)",
            origin="edge",
            cause="unavailable",
        ),
    ]


def _nonce(request: bytes) -> str:
    start = request.index(b'nonce="') + len(b'nonce="')
    return request[start : request.index(b'"', start)].decode()
