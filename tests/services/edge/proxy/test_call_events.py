"""The `edge.call.…` events the proxy core publishes, call by call (sans-IO, no broker).

Each test drives one call through the core and asserts the exact events, in
order, that a consumer would receive from this edge.
"""

from __future__ import annotations

import pytest

from services.edge.policy.callers import CallerProfiles
from services.edge.policy.overload import LoadShedder
from services.edge.proxy.call_events import CallEvents, CallNotes, edge_cause, host_port
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    CallStarted,
    CallUpdated,
)
from shared.dns.cache import record_key
from shared.routing_table.model import Peer
from shared.sip.message import Request
from shared.sip.transport.destination import Destination
from tests.services.edge.destinations.support import BOX1, BOX1_URI, farm_run
from tests.services.edge.proxy.support import published, without_legs
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    PEER,
    TRUSTED,
    Run,
    Table,
    answer,
    invite,
    only_request,
    signed,
    statuses,
)
from tests.services.edge.proxy.test_routes_dns import dns_run

WALL = 1_760_000_000.0
"""Wall time when the core's clock reads 0."""
START = 100.0
ME = "edge-a"
CALLER_PHONE = Destination("udp", "10.0.0.5", 5070)
"""Where the caller's Contact points (the callee's BYE goes there)."""
KEY = {"call_id": "call-1", "edge": ME, "from_tag": "a1"}
GATEWAY_1 = {"target": "1", "target_kind": "gateway", "address": f"{GW1.host}:5060"}
GATEWAY_2 = {"target": "2", "target_kind": "gateway", "address": f"{GW2.host}:5060"}


def events_run(
    *, call_events: bool = True, signer: RecordRouteSigner | None = None, table: Table | None = None
) -> Run:
    """The core of `test_core`, with this edge's call events on (or off); `signer`: its
    record-route keys (else its own); `table`: its routing table (else `Table`'s)."""
    table = table or Table()
    interfaces = Interfaces(
        [Interface("udp", EDGE, 5060, 5060), Interface("tcp", EDGE, 5060, 5060)]
    )
    signer = signer or RecordRouteSigner.ephemeral()
    dialogs = DialogGate(signer, lambda source: source.host in TRUSTED)
    events = CallEvents(ME, wall_offset=WALL) if call_events else None
    proxy = Proxy(
        interfaces,
        NumberRouter(table, CallerProfiles("", table)),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        dialogs=dialogs,
        call_events=events,
    )
    return Run(proxy, table, now=START)


@pytest.fixture
def run() -> Run:
    return events_run()


def started(**fields: object) -> CallStarted:
    facts: dict[str, object] = {
        **KEY,
        "at": WALL + START,
        "caller": "sip:alice@example.com",
        "callee_dialled": "14075551234",
        "callee": "14075551234",
        "source": f"{CALLER.host}:{CALLER.port}",
        "transport": "udp",
        "rule": "r1407",
        "group": "0",
    }
    return CallStarted.model_validate({**facts, **fields})


def cancel() -> bytes:
    return invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")


def callers_request(run: Run, method: str, cseq: int) -> bytes:
    """A request of the caller inside the dialog, along the edge's Record-Route."""
    return (
        f"{method} sip:gw@{GW1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK{method.lower()}{cseq}\r\n"
        f"Route: {signed(run.proxy, 'call-1')}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:14075551234@example.com>;tag=gw\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def callees_bye(run: Run) -> bytes:
    """The gateway hangs up: its BYE to the caller's Contact, along the Record-Route."""
    return (
        "BYE sip:alice@10.0.0.5:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgwbye\r\n"
        f"Route: {signed(run.proxy, 'call-1')}\r\n"
        "From: <sip:14075551234@example.com>;tag=gw\r\nTo: <sip:alice@example.com>;tag=a1\r\n"
        "Call-ID: call-1\r\nCSeq: 7 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def reply(request: Request, status: int) -> bytes:
    """The far end's final answer to an in-dialog request (its headers echoed, tags kept)."""
    lines = [f"SIP/2.0 {status} OK"]
    lines += [f"Via: {via}" for via in request.headers("via")]
    lines += [f"{name}: {request.header(name)}" for name in ("from", "to", "call-id", "cseq")]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def answered_call(run: Run) -> None:
    """INVITE, 100, 180 (twice), 200 from gateway 1, one second apart each."""
    forwarded = only_request(run.send(invite()), GW1)
    run.now += 1
    assert published(run.send(answer(forwarded, 100), GW1)) == []
    assert published(run.send(answer(forwarded, 180), GW1)) == [
        CallRinging(**KEY, at=WALL + 101, status=180)
    ]
    assert published(run.send(answer(forwarded, 180), GW1)) == []  # the first ringing only
    run.now += 1
    actions = run.send(answer(forwarded, 200), GW1)
    assert without_legs(published(actions)) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + 102, sent_at=WALL + 100, status=200, reason="Whatever"
        ),
        CallAnswered(**KEY, **GATEWAY_1, at=WALL + 102, to_tag="gw"),
    ]
    assert published(run.send(answer(forwarded, 200), GW1)) == []  # a retransmission


def test_an_invite_accepted_for_routing_is_a_started_call(run: Run) -> None:
    assert published(run.send(invite())) == [started()]


def test_a_call_from_a_peer_names_it_for_the_records_and_the_live_calls() -> None:
    table = Table()
    table.put("peer", "acme", Peer(addresses=(f"{PEER.host}/32",), trusted=True))
    run = events_run(table=table)
    source = f"{PEER.host}:{PEER.port}"
    assert published(run.send(invite(), PEER)) == [started(source=source, peer="acme")]


def test_an_answered_call_hung_up_by_the_caller(run: Run) -> None:
    answered_call(run)
    run.now = 160.0
    bye = only_request(run.send(callers_request(run, "BYE", 2)), GW1)
    run.now = 160.5
    assert published(run.send(reply(bye, 200), GW1)) == [
        CallEnded(**KEY, to_tag="gw", at=WALL + 160, status=200)
    ]


def test_a_bye_from_the_callee_carries_the_swapped_tags(run: Run) -> None:
    answered_call(run)
    run.now = 160.0
    bye = only_request(run.send(callees_bye(run), GW1), CALLER_PHONE)
    assert published(run.send(reply(bye, 200), CALLER_PHONE)) == [
        CallEnded(call_id="call-1", edge=ME, from_tag="gw", to_tag="a1", at=WALL + 160, status=200)
    ]


def test_a_bye_without_an_answer_ends_the_call_with_408(run: Run) -> None:
    run.now = 160.0
    only_request(run.send(callers_request(run, "BYE", 2)), GW1)
    actions = run.later(40.0)  # past Timer F
    assert published(actions) == [CallEnded(**KEY, to_tag="gw", at=WALL + 160, status=408)]


def test_a_busy_callee_is_one_branch_and_the_failure_relayed(run: Run) -> None:
    forwarded = only_request(run.send(invite()), GW1)
    run.now += 3
    assert published(run.send(answer(forwarded, 486), GW1)) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + 103, sent_at=WALL + 100, status=486, reason="Whatever"
        ),
        CallFailed(**KEY, at=WALL + 103, status=486, reason="Whatever", origin="upstream"),
    ]


def test_an_rfc2543_call_without_a_from_tag_is_keyed_by_an_empty_tag(run: Run) -> None:
    """A consumer joins a call's events by Call-ID and From tag: each must carry the same."""
    forwarded = only_request(run.send(invite().replace(b";tag=a1", b"")), GW1)
    failed = published(run.send(answer(forwarded, 486), GW1))[-1]
    assert failed == CallFailed(
        **{**KEY, "from_tag": ""}, at=WALL + START, status=486, reason="Whatever", origin="upstream"
    )
    assert published(events_run().send(invite().replace(b";tag=a1", b""))) == [started(from_tag="")]


def test_an_upstream_failure_carries_no_cause_of_the_edges() -> None:
    events = CallEvents(ME)
    notes = CallNotes("call-1", "a1")
    upstream = events.failed(notes, 503, "x", START, by_edge=False, cause="limit").event
    own = events.failed(notes, 503, "x", START, by_edge=True, cause="limit").event
    assert isinstance(upstream, CallFailed) and isinstance(own, CallFailed)
    assert (upstream.cause, own.cause) == (None, "limit")


def test_a_failover_is_two_branches_then_the_answer(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    run.now += 1
    actions = run.send(answer(first, 503), GW1)
    assert published(actions) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + 101, sent_at=WALL + 100, status=503, reason="Whatever"
        ),
    ]
    second = only_request(actions, GW2)
    run.now += 1
    assert without_legs(published(run.send(answer(second, 200), GW2))) == [
        BranchTried(
            **KEY, **GATEWAY_2, at=WALL + 102, sent_at=WALL + 101, status=200, reason="Whatever"
        ),
        CallAnswered(**KEY, **GATEWAY_2, at=WALL + 102, to_tag="gw"),
    ]


def test_every_gateway_busy_with_5xx_is_the_edges_500(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    events = published(run.send(answer(second, 503), GW2))
    assert events[-1] == CallFailed(
        **KEY,
        at=WALL + START,
        status=500,
        reason="Server Internal Error (next hop unavailable)",
        origin="edge",
        cause="unavailable",
    )


def test_silent_gateways_are_408_branches_and_the_edges_timeout(run: Run) -> None:
    run.send(invite())
    first = published(run.later(2.1))
    assert first == [
        BranchTried(
            **KEY,
            **GATEWAY_1,
            at=WALL + 102.1,
            sent_at=WALL + 100,
            status=408,
            reason="Request Timeout",
        ),
    ]
    second = published(run.later(2.1))
    assert second == [
        BranchTried(
            **KEY,
            **GATEWAY_2,
            at=WALL + 104.2,
            sent_at=WALL + 102.1,
            status=408,
            reason="Request Timeout",
        ),
        CallFailed(
            **KEY,
            at=WALL + 104.2,
            status=408,
            reason="Request Timeout",
            origin="edge",
            cause="timeout",
        ),
    ]


def test_an_unrouted_number_is_a_started_call_the_edge_failed(run: Run) -> None:
    events = published(run.send(invite(uri=f"sip:999@{EDGE}")))
    assert events == [
        started(callee_dialled="999", callee="999", rule=None),
        CallFailed(
            **KEY,
            at=WALL + START,
            status=404,
            reason="Not Found (no route for 999)",
            origin="edge",
            cause="unrouted",
        ),
    ]


def test_a_call_refused_before_routing_is_recorded_as_dialled(run: Run) -> None:
    """Max-Forwards 0: neither the dialplan nor the routing table was asked."""
    events = published(run.send(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0")))
    assert events == [
        started(rule=None, group=None),
        CallFailed(
            **KEY,
            at=WALL + START,
            status=483,
            reason="Too Many Hops",
            origin="edge",
            cause="rejected",
        ),
    ]


def test_an_overloaded_edges_refusal_is_a_limit(run: Run) -> None:
    shedder = LoadShedder()
    shedder.shedding = True
    run.proxy.shedder = shedder
    [_, failed] = published(run.send(invite()))
    assert failed == CallFailed(
        **KEY,
        at=WALL + START,
        status=503,
        reason="Service Unavailable (overloaded)",
        origin="edge",
        cause="limit",
    )


def test_a_call_cancelled_while_ringing_is_cancelled_and_its_branch_487(run: Run) -> None:
    """The consumer sees `CallCancelled` and the branch's 487; no `CallFailed`: the 487
    upstream is the CANCEL's doing, not the callee's."""
    forwarded = only_request(run.send(invite()), GW1)
    run.send(answer(forwarded, 180), GW1)
    run.now += 4
    assert published(run.send(cancel())) == [CallCancelled(**KEY, at=WALL + 104)]
    run.now += 0.5
    actions = run.send(answer(forwarded, 487), GW1)
    assert statuses(actions) == [487]
    assert published(actions) == [
        BranchTried(
            **KEY, **GATEWAY_1, at=WALL + 104.5, sent_at=WALL + 100, status=487, reason="Whatever"
        ),
    ]


def test_a_call_cancelled_before_any_answer_ends_without_a_failure(run: Run) -> None:
    run.send(invite())
    assert published(run.send(cancel())) == [CallCancelled(**KEY, at=WALL + START)]
    actions = run.later(2.1)
    assert statuses(actions) == [487]
    assert [type(event) for event in published(actions)] == [BranchTried]


def test_a_cancelled_reinvite_is_no_cancelled_call(run: Run) -> None:
    """A re-INVITE's forwarding holds no call (its call was started long ago): its CANCEL
    is answered, and published as nothing."""
    run.now = 130.0
    reinvite = callers_request(run, "INVITE", 3)
    only_request(run.send(reinvite), GW1)
    cancel = reinvite.replace(b"INVITE sip", b"CANCEL sip").replace(b"3 INVITE", b"3 CANCEL")
    actions = run.send(cancel)
    assert 200 in statuses(actions)
    assert published(actions) == []


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_a_reinvite_or_update_is_an_updated_call(run: Run, method: str) -> None:
    run.now = 130.0
    actions = run.send(callers_request(run, method, 3))
    assert only_request(actions, GW1).method == method
    assert published(actions) == [CallUpdated(**KEY, to_tag="gw", at=WALL + 130, method=method)]
    request = only_request(actions, GW1)
    assert published(run.send(answer(request, 200), GW1)) == []  # no branch of a call


def test_a_message_is_no_call() -> None:
    run = events_run()
    message = invite().replace(b"INVITE", b"MESSAGE")
    forwarded = only_request(run.send(message), GW1)
    assert published(run.send(answer(forwarded, 200), GW1)) == []


def test_with_call_events_off_a_whole_call_publishes_none() -> None:
    run = events_run(call_events=False)
    forwarded = only_request(run.send(invite()), GW1)
    actions = run.send(answer(forwarded, 180), GW1) + run.send(answer(forwarded, 200), GW1)
    bye = only_request(run.send(callers_request(run, "BYE", 2)), GW1)
    actions += run.send(reply(bye, 200), GW1) + run.send(invite(uri=f"sip:999@{EDGE}"))
    assert published(actions) == []


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (404, "unrouted"),
        (480, "unrouted"),
        (484, "unrouted"),
        (403, "rejected"),
        (483, "rejected"),
        (486, "limit"),
        (503, "limit"),
        (408, "timeout"),
        (500, "unavailable"),
    ],
)
def test_the_edges_own_answers_are_classed_by_status(status: int, cause: str) -> None:
    assert edge_cause(status) == cause


def test_a_dispatcher_destination_is_named_by_its_set_and_uri() -> None:
    run, _sets, _calls = farm_run()
    run.proxy.call_events = CallEvents(ME, wall_offset=WALL)
    run.now = START
    actions = run.send(invite())
    assert published(actions) == [started()]
    box = only_request(actions, BOX1)
    [branch, answered] = without_legs(published(run.send(answer(box, 200), BOX1)))
    destination = {"target": f"farm:{BOX1_URI}", "target_kind": "destination"}
    assert branch == BranchTried(
        **KEY,
        **destination,
        address=f"{BOX1.host}:5060",
        at=WALL + START,
        sent_at=WALL + START,
        status=200,
        reason="Whatever",
    )
    assert answered == CallAnswered(
        **KEY, **destination, address=f"{BOX1.host}:5060", at=WALL + START, to_tag="gw"
    )


def test_an_rfc2543_callers_reinvite_without_a_from_tag_is_keyed_by_an_empty_tag(
    run: Run,
) -> None:
    """As its call was: an RFC 2543 dialog has no From tag, and its events must still match."""
    reinvite = callers_request(run, "INVITE", 3).replace(b";tag=a1", b"")
    [updated] = published(run.send(reinvite))
    assert isinstance(updated, CallUpdated) and updated.from_tag == ""


def test_a_call_along_a_preloaded_route_tries_a_uri(run: Run) -> None:
    """A trusted peer's Route names the next hop: neither gateway, destination nor contact."""
    data = invite(extra=f"Route: <sip:{GW2.host};lr>\r\n")
    forwarded = only_request(run.send(data, PEER), GW2)
    [tried, _failed] = published(run.send(answer(forwarded, 486), GW2))
    assert isinstance(tried, BranchTried)
    assert (tried.target, tried.target_kind) == (forwarded.uri_text, "uri")


def test_an_ipv6_address_is_bracketed_before_its_port() -> None:
    """As a URI writes it: `2001:db8::1:5060` would not say where the host ends."""
    assert host_port(Destination("udp", "2001:db8::1", 5060)) == "[2001:db8::1]:5060"
    assert host_port(Destination("udp", "192.0.2.1", 5060)) == "192.0.2.1:5060"


def test_a_call_with_no_branch_at_all_failed_as_unavailable() -> None:
    """Its one hop, a Route's name, does not resolve: the edge's 480 is no unrouted number."""
    run, cache = dns_run()
    run.proxy.call_events = CallEvents(ME, wall_offset=WALL)
    for kind in ("A", "AAAA"):
        cache.put(record_key("nowhere.test", kind), (), None, run.now, "no such name")
    actions = run.send(invite(extra="Route: <sip:nowhere.test:5080;lr>\r\n"), PEER)
    assert statuses(actions, PEER) == [100, 480]
    failed = published(actions)[-1]
    assert isinstance(failed, CallFailed)
    assert (failed.status, failed.origin, failed.cause) == (480, "edge", "unavailable")
