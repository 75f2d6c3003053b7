"""The sans-IO proxy core driven message by message: what it sends, answers and publishes."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from services.edge import metrics
from services.edge.policy.overload import LoadShedder
from services.edge.proxy.actions import Action, Publish, Send
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.contracts.edge import GatewayFailed
from shared.routing_table.model import Gateway, Rule
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable

EDGE = "192.0.2.10"
CALLER = Destination("udp", "198.51.100.20", 5070)
GW1 = Destination("udp", "203.0.113.1", 5060)
GW2 = Destination("udp", "203.0.113.2", 5060)
PEER = Destination("udp", "198.51.100.9", 5060)
"""A trusted peer (an SBC, an Asterisk box): RFC 3261 §16 loose routing without tokens."""
TRUSTED = frozenset({GW1.host, GW2.host, PEER.host})
UDP_IN = Listener("udp", EDGE, 5060)
TCP_IN = Listener("tcp", EDGE, 5060)


class Table(MemoryTable):
    """The table of these tests: 1407 → gateways 1 (adds prefix 00), 2; 44 → 2."""

    def __init__(self) -> None:
        super().__init__(
            {
                "1": Gateway(address=f"sip:{GW1.host}", prefix="00"),
                "2": Gateway(address=f"sip:{GW2.host}:5060"),
            },
            {
                "r1407": Rule(prefix="1407", gateways=("1", "2")),
                "r44": Rule(prefix="44", gateways=("2",)),
            },
        )


@dataclass
class Run:
    proxy: Proxy
    table: Table
    now: float = 100.0

    def send(
        self, data: bytes, source: Destination = CALLER, listener: Listener = UDP_IN
    ) -> list[Action]:
        return self.proxy.receive(data, source, listener, self.now)

    def later(self, seconds: float) -> list[Action]:
        self.now += seconds
        return self.proxy.expire(self.now)


def core_run(
    signer: RecordRouteSigner | None = None,
    trusted: frozenset[str] = TRUSTED,
    sockets: list[Interface] | None = None,
) -> Run:
    """A proxy trusting `trusted` (the gateways and `PEER`); `signer`: its record-route key
    (else its own); `sockets`: its interfaces (else UDP and TCP on 5060)."""
    interfaces = Interfaces(
        sockets or [Interface("udp", EDGE, 5060, 5060), Interface("tcp", EDGE, 5060, 5060)]
    )
    table = Table()
    signer = signer or RecordRouteSigner.ephemeral()
    dialogs = DialogGate(signer, lambda source: source.host in trusted)
    timers = ProxyTimers(fr=2.0, fr_inv=10.0)
    return Run(Proxy(interfaces, NumberRouter(table), timers, dialogs=dialogs), table)


@pytest.fixture
def run() -> Run:
    return core_run()


@pytest.fixture
def trusting_run() -> Run:
    """The caller trusted too: its preloaded Route sets are followed (RFC 3261 §16.4)."""
    return core_run(trusted=TRUSTED | {CALLER.host})


def signed(proxy: Proxy, call_id: str, route: str = f"<sip:{EDGE}:5060;lr>") -> str:
    """`route` (one of our Record-Routes) as the edge signs it for the dialog `call_id`."""
    return f"{route[:-1]}{proxy.dialogs.route_params(call_id, None)}>"


def invite(
    uri: str = f"sip:14075551234@{EDGE}", extra: str = "", branch: str = "z9hG4bKc1"
) -> bytes:
    return (
        f"INVITE {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch={branch};rport\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:14075551234@example.com>\r\n"
        "Call-ID: call-1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@10.0.0.5:5070>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def sent_to(actions: list[Action], destination: Destination) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send) and a.destination == destination]


def only_request(actions: list[Action], destination: Destination) -> Request:
    [data] = sent_to(actions, destination)
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def statuses(actions: list[Action], destination: Destination = CALLER) -> list[int]:
    found = []
    for data in sent_to(actions, destination):
        if not data.startswith(b"SIP/2.0 "):
            continue
        message = parse_message(data)
        assert isinstance(message, Response)
        found.append(message.status)
    return found


def answer(request: Request, status: int, extra: str = "") -> bytes:
    """The gateway's response to `request` (Vias and Record-Route echoed)."""
    lines = [f"SIP/2.0 {status} Whatever"]
    lines += [f"Via: {via}" for via in request.headers("via")]
    lines += [f"Record-Route: {rr}" for rr in request.headers("record-route")]
    lines += [
        f"From: {request.header('from')}",
        f"To: {request.header('to')};tag=gw",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.header('cseq')}",
        "Contact: <sip:gw@203.0.113.1>",
    ]
    return ("\r\n".join(lines) + f"\r\n{extra}Content-Length: 0\r\n\r\n").encode()


def test_invite_is_forwarded_to_the_first_gateway(run: Run) -> None:
    actions = run.send(invite())
    assert statuses(actions) == [100]
    forwarded = only_request(actions, GW1)
    assert forwarded.uri_text == f"sip:0014075551234@{GW1.host}"
    assert forwarded.max_forwards == 69
    assert forwarded.headers("record-route") == [signed(run.proxy, "call-1")]
    top, caller = forwarded.vias
    assert (top.host, top.port) == (EDGE, 5060)
    assert (top.branch or "").startswith("z9hG4bKcm")
    assert (caller.received, caller.rport) == (CALLER.host, CALLER.port)


def test_provisional_and_2xx_go_back_to_the_caller_without_our_via(run: Run) -> None:
    forwarded = only_request(run.send(invite()), GW1)
    assert statuses(run.send(answer(forwarded, 180), GW1)) == [180]
    [ok] = sent_to(run.send(answer(forwarded, 200), GW1), CALLER)
    response = parse_message(ok)
    assert [via.host for via in response.vias] == ["10.0.0.5"]
    assert response.headers("record-route") == [signed(run.proxy, "call-1")]


def test_a_request_that_comes_back_unchanged_is_a_loop(run: Run) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(run.send(data, PEER), GW1)
    # GW1 routes it straight back to us, unchanged: the same hash is in our Via.
    forwarded.prepend_via(f"SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw1")
    assert statuses(run.send(forwarded.to_bytes(), GW1), GW1) == [482]


def test_a_spiral_with_a_new_request_uri_is_not_a_loop(run: Run) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(run.send(data, PEER), GW1)
    forwarded.set_uri(f"sip:14075551234@{EDGE}")  # retargeted: now a call to a number
    forwarded.remove_header("route")
    forwarded.prepend_via(f"SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw1")
    again = run.send(forwarded.to_bytes(), GW1)
    assert statuses(again, GW1) == [100]
    [data] = [d for d in sent_to(again, GW1) if not d.startswith(b"SIP/2.0 ")]
    request = parse_message(data)
    assert isinstance(request, Request)
    assert request.uri_text == f"sip:0014075551234@{GW1.host}"


def test_proxy_require_with_an_unknown_option_is_420_listing_it(run: Run) -> None:
    [data] = sent_to(run.send(invite(extra="Proxy-Require: foo, bar\r\n")), CALLER)
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 420
    assert response.headers("unsupported") == ["foo", "bar"]


def test_strict_router_fix_up_takes_the_request_uri_from_the_last_route(run: Run) -> None:
    data = invite(
        uri=signed(run.proxy, "call-1", f"<sip:{EDGE}:5060;lr>")[1:-1],
        extra=f"Route: <sip:14075551234@{GW2.host}:5060>\r\n",
    ).replace(b"To: <sip:14075551234@example.com>", b"To: <sip:x@example.com>;tag=t")
    forwarded = only_request(run.send(data), GW2)
    assert forwarded.uri_text == f"sip:14075551234@{GW2.host}:5060"
    assert forwarded.headers("route") == []
    assert forwarded.headers("record-route") == []  # in-dialog: no Record-Route


def test_in_dialog_request_is_routed_by_its_route_headers_alone(run: Run) -> None:
    bye = (
        f"BYE sip:gw@{GW2.host}:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye1\r\n"
        f"Route: {signed(run.proxy, 'old-call')}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        "Call-ID: old-call\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    forwarded = only_request(run.send(bye), GW2)
    assert forwarded.uri_text == f"sip:gw@{GW2.host}:5060"
    assert forwarded.headers("route") == []


def test_503_fails_over_and_is_published(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, 503, "Retry-After: 30\r\n"), GW1)
    second = only_request(actions, GW2)
    assert second.uri_text == f"sip:14075551234@{GW2.host}:5060"
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, GatewayFailed)
    assert (event.gateway_id, event.reason, event.status, event.retry_after) == (
        "1",
        "status",
        503,
        30,
    )
    # Both fail: the caller gets 500, not 503 (§16.7 step 6).
    assert statuses(run.send(answer(second, 503), GW2)) == [500]


def test_6xx_stops_the_failover(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, 603), GW1)
    assert sent_to(actions, GW2) == []
    assert statuses(actions) == [603]


def test_silence_fails_over_after_fr_and_is_published_as_a_timeout(run: Run) -> None:
    run.send(invite())
    actions = run.later(2.1)
    assert only_request(actions, GW2).method == "INVITE"
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, GatewayFailed) and event.reason == "timeout" and event.status == 408


def test_no_final_answer_after_ringing_cancels_and_fails_over(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 180), GW1)
    actions = run.later(10.5)  # fr_inv (Timer C)
    cancel = only_request(actions, GW1)
    assert cancel.method == "CANCEL" and cancel.top_via.branch == first.top_via.branch
    assert only_request(actions, GW2).method == "INVITE"


def test_cancel_reaches_the_ringing_branch(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 180), GW1)
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    actions = run.send(cancel)
    assert statuses(actions) == [200]
    assert only_request(actions, GW1).method == "CANCEL"
    assert sent_to(run.send(answer(first, 183), GW1), GW1) == []  # one CANCEL per branch
    actions = run.send(answer(first, 487), GW1)
    assert statuses(actions) == [487]
    assert only_request(actions, GW1).method == "ACK"  # hop-by-hop ACK for the 487


def test_a_cancel_after_the_final_answer_reaches_no_gateway(run: Run) -> None:
    """§9.2: the INVITE's transaction still matches, so the CANCEL gets its 200; the call
    is over, so nothing is cancelled (a race every caller loses sometimes)."""
    first = only_request(run.send(invite()), GW1)
    assert statuses(run.send(answer(first, 486), GW1)) == [486]
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    actions = run.send(cancel)
    assert statuses(actions) == [200]
    assert sent_to(actions, GW1) == []


def test_cancel_before_any_provisional_ends_in_487(run: Run) -> None:
    run.send(invite())
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    assert statuses(run.send(cancel)) == [200]
    assert statuses(run.later(2.1)) == [487]


def test_gateways_known_down_are_skipped(run: Run) -> None:
    run.table.health.set("1", "down")
    assert only_request(run.send(invite()), GW2).method == "INVITE"


def test_no_route_is_404_with_a_reason(run: Run) -> None:
    _trying, data = sent_to(run.send(invite(uri=f"sip:999@{EDGE}")), CALLER)
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 404
    assert response.header("reason") == 'SIP;cause=404;text="no route"'


def test_an_rfc2543_invite_stamped_with_rport_keeps_its_transaction(run: Run) -> None:
    """An RFC 2543 key holds the whole top Via, which the edge stamps (received, rport):
    the retransmission and the ACK for the 404 must find the stamped original's key."""
    request = invite(uri=f"sip:999@{EDGE}").replace(b"branch=z9hG4bKc1;", b"")
    _trying, first = sent_to(run.send(request), CALLER)
    assert statuses(run.send(request)) == [404]  # the 404 again, from the transaction
    ack = (
        request.replace(b"INVITE sip", b"ACK sip", 1)
        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK")
        .replace(b"To: <sip:14075551234@example.com>", _to_of(first))
    )
    assert run.send(ack) == []  # absorbed by the transaction
    assert run.later(1.0) == []  # and no more 404 retransmissions (Timer G stopped)


def _to_of(response: bytes) -> bytes:
    return next(line for line in response.split(b"\r\n") if line.startswith(b"To:"))


def test_a_name_instead_of_a_number_is_404_until_the_registrar(run: Run) -> None:
    _trying, data = sent_to(run.send(invite(uri=f"sip:bob@{EDGE}")), CALLER)
    assert parse_message(data).reason == "Not Found (registrar not available)"  # type: ignore[union-attr]


def test_tcp_in_udp_out_gets_two_record_routes(run: Run) -> None:
    caller = Destination("tcp", CALLER.host, CALLER.port, connection_id=7)
    data = invite().replace(b"SIP/2.0/UDP 10.0.0.5", b"SIP/2.0/TCP 10.0.0.5")
    actions = run.send(data, caller, TCP_IN)
    assert statuses(actions, caller) == [100]  # back over the connection it came on
    forwarded = only_request(actions, GW1)
    assert forwarded.headers("record-route") == [
        signed(run.proxy, "call-1"),
        signed(run.proxy, "call-1", f"<sip:{EDGE}:5060;transport=tcp;lr>"),
    ]


def test_a_call_in_on_a_second_udp_socket_is_record_routed_by_that_socket_too() -> None:
    """Two UDP sockets: the one a call came in on is told by its port, and recorded."""
    run = core_run(sockets=[Interface("udp", EDGE, 5060, 5060), Interface("udp", EDGE, 5080, 5080)])
    forwarded = only_request(run.send(invite(), CALLER, Listener("udp", EDGE, 5080)), GW1)
    assert forwarded.headers("record-route") == [
        signed(run.proxy, "call-1"),
        signed(run.proxy, "call-1", f"<sip:{EDGE}:5080;lr>"),
    ]


def test_options_to_the_edge_itself_is_answered(run: Run) -> None:
    options = invite(uri=f"sip:{EDGE}").replace(b"INVITE", b"OPTIONS")
    [data] = sent_to(run.send(options), CALLER)
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 200
    assert "INVITE" in (response.header("allow") or "")
    for name in (b"Allow: ", b"Supported: ", b"Accept: application/sdp"):
        assert b"\r\n" + name in data, name


def test_max_forwards_0_is_483(run: Run) -> None:
    data = invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert statuses(run.send(data)) == [483]


def test_a_2xx_retransmission_without_transaction_is_forwarded_statelessly(run: Run) -> None:
    response = (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {EDGE}:5060;branch=z9hG4bKcmgone\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKc9;received=198.51.100.20;rport=5070\r\n"
        "From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\n"
        "Call-ID: gone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    [data] = sent_to(run.send(response, GW1), CALLER)
    assert [via.host for via in parse_message(data).vias] == ["10.0.0.5"]


def test_garbage_gets_400_and_the_proxy_goes_on(run: Run) -> None:
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    before = metrics.RESPONSES[400]
    assert statuses(run.send(bad)) == [400]
    assert metrics.RESPONSES[400] == before + 1  # one answer sent, one counted
    assert statuses(run.send(invite(branch="z9hG4bKc2"))) == [100]


# ----- boundaries the mutation runs showed unguarded --------------------------------------

TRUSTED_PEER = Destination("udp", PEER.host, 5070)
"""In-dialog requests come from a trusted source: they are relayed along any Route then."""


def in_dialog(method: str, max_forwards: int, cseq: int = 2) -> bytes:
    """A mid-dialog request from the caller's side, routed through us to GW2."""
    return (
        f"{method} sip:gw@{GW2.host}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PEER.host}:5070;branch=z9hG4bK{method.lower()}{max_forwards}\r\n"
        f"Route: <sip:{EDGE}:5060;lr>\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        f"Call-ID: dialog-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: {max_forwards}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(("received", "forwarded"), [(70, 69), (2, 1), (1, 0)])
def test_the_stateless_ack_leaves_with_max_forwards_decremented(
    run: Run, received: int, forwarded: int
) -> None:
    ack = only_request(run.send(in_dialog("ACK", received, cseq=1), TRUSTED_PEER), GW2)
    assert ack.max_forwards == forwarded


def test_a_retransmitted_stateless_ack_leaves_byte_for_byte_as_the_first(run: Run) -> None:
    """§16.11: a caller ACKs every retransmitted 2xx with the same ACK; a UAS that saw the
    second with another Via branch would take it for a new request (SIPp aborts the call)."""
    first, again = (
        sent_to(run.send(in_dialog("ACK", 70, cseq=1), TRUSTED_PEER), GW2) for _ in "12"
    )
    assert first == again and len(first) == 1
    other = sent_to(run.send(in_dialog("ACK", 70, cseq=5), TRUSTED_PEER), GW2)
    assert parse_message(other[0]).top_branch != parse_message(first[0]).top_branch


def test_a_stateless_ack_with_max_forwards_0_goes_nowhere(run: Run) -> None:
    # Positive control: the same ACK with one hop left does leave.
    assert len(sent_to(run.send(in_dialog("ACK", 1, cseq=1), TRUSTED_PEER), GW2)) == 1
    actions = run.send(in_dialog("ACK", 0, cseq=1), TRUSTED_PEER)
    assert actions == []  # an ACK is never answered, not even with 483


@pytest.mark.parametrize("method", ["INVITE", "SUBSCRIBE"])
def test_max_forwards_1_is_forwarded_with_0_and_0_is_483(run: Run, method: str) -> None:
    last_hop = invite(branch="z9hG4bKmf1").replace(b"Max-Forwards: 70", b"Max-Forwards: 1")
    last_hop = last_hop.replace(b"INVITE", method.encode())
    forwarded = only_request(run.send(last_hop), GW1)
    assert (forwarded.method, forwarded.max_forwards) == (method, 0)
    spent = last_hop.replace(b"Max-Forwards: 1", b"Max-Forwards: 0")
    assert statuses(run.send(spent.replace(b"z9hG4bKmf1", b"z9hG4bKmf0"))) == [483]


def test_an_in_dialog_request_with_max_forwards_1_is_forwarded_with_0(run: Run) -> None:
    assert only_request(run.send(in_dialog("BYE", 1), TRUSTED_PEER), GW2).max_forwards == 0
    assert statuses(run.send(in_dialog("BYE", 0, cseq=3), TRUSTED_PEER), TRUSTED_PEER) == [483]


def test_a_request_back_with_only_its_request_uri_changed_spirals(trusting_run: Run) -> None:
    """The Request-URI is part of the loop hash: same Route, From, To, Call-ID, CSeq."""
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(trusting_run.send(data), GW1)
    forwarded.set_uri("sip:carol@example.com")  # GW1 retargeted it and sent it back to us
    forwarded.prepend_via(f"SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw2")
    again = trusting_run.send(forwarded.to_bytes(), GW1)
    assert statuses(again, GW1) == [100]
    [data] = [d for d in sent_to(again, GW1) if not d.startswith(b"SIP/2.0 ")]
    assert parse_message(data).headers("route") == [f"<sip:{GW1.host};lr>"]


@pytest.mark.parametrize(
    ("method", "recorded"),
    [("INVITE", True), ("SUBSCRIBE", True), ("REFER", True), ("OPTIONS", False)],
)
def test_requests_that_create_dialogs_are_record_routed(
    run: Run, method: str, recorded: bool
) -> None:
    data = invite().replace(b"INVITE", method.encode())
    forwarded = only_request(run.send(data), GW1)
    expected = [signed(run.proxy, "call-1")] if recorded else []
    assert forwarded.headers("record-route") == expected


@pytest.mark.parametrize("method", ["SUBSCRIBE", "REFER", "INVITE"])
def test_requests_inside_a_dialog_are_not_record_routed(run: Run, method: str) -> None:
    forwarded = only_request(run.send(in_dialog(method, 70), TRUSTED_PEER), GW2)
    assert forwarded.method == method
    assert forwarded.headers("record-route") == []


@pytest.mark.parametrize(
    ("status", "published"), [(500, True), (502, True), (599, True), (408, False)]
)
def test_a_5xx_or_408_fails_over_to_the_next_gateway(
    run: Run, status: int, published: bool
) -> None:
    """Only a 5xx is the gateway's failure; its own 408 shows it is alive (nothing published)."""
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, status), GW1)
    assert only_request(actions, GW2).method == "INVITE"
    events = [a.event for a in actions if isinstance(a, Publish)]
    assert [(e.gateway_id, e.status) for e in events if isinstance(e, GatewayFailed)] == (
        [("1", status)] if published else []
    )
    assert len(events) == int(published)


@pytest.mark.parametrize("status", [404, 486, 600])
def test_a_4xx_or_6xx_is_the_callees_word_and_goes_back(run: Run, status: int) -> None:
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, status), GW1)
    assert sent_to(actions, GW2) == []
    assert statuses(actions) == [status]
    assert [a for a in actions if isinstance(a, Publish)] == []


def final_of(actions: list[Action], destination: Destination = CALLER) -> Response:
    [data] = [d for d in sent_to(actions, destination) if not d.startswith(b"SIP/2.0 100")]
    response = parse_message(data)
    assert isinstance(response, Response)
    return response


@pytest.mark.parametrize(
    ("old", "new"), [(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"), (b";tag=a1", b";tag=a2")]
)
def test_a_request_back_with_its_cseq_or_from_tag_changed_spirals(
    trusting_run: Run, old: bytes, new: bytes
) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(trusting_run.send(data), GW1)
    forwarded.prepend_via(f"SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw3")
    back = forwarded.to_bytes()
    looped = final_of(trusting_run.send(back, GW1), GW1)  # the control: unchanged, it is a loop
    assert (looped.status, looped.reason) == (482, "Loop Detected")
    spiral = back.replace(old, new).replace(b"z9hG4bKgw3", b"z9hG4bKgw4")
    assert statuses(trusting_run.send(spiral, GW1), GW1) == [100]


def test_the_cancel_the_edge_sends_is_built_from_the_invite_it_sent(trusting_run: Run) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    first = only_request(trusting_run.send(data), GW1)
    trusting_run.send(answer(first, 180), GW1)
    cancel = data.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    sent = only_request(trusting_run.send(cancel), GW1).to_bytes()
    assert sent.startswith(f"CANCEL {first.uri_text} SIP/2.0\r\n".encode())
    for line in (
        f"Via: {first.headers('via')[0]}",
        f"Route: <sip:{GW1.host};lr>",
        "Max-Forwards: 70",
        f"From: {first.header('from')}",
        f"To: {first.header('to')}",
        f"Call-ID: {first.call_id}",
        "CSeq: 1 CANCEL",
    ):
        assert f"\r\n{line}\r\n".encode() in sent, line


def test_a_cancel_matching_nothing_is_481(run: Run) -> None:
    cancel = invite(branch="z9hG4bKnone").replace(b"INVITE sip", b"CANCEL sip")
    assert statuses(run.send(cancel.replace(b"1 INVITE", b"1 CANCEL"))) == [481]


def test_when_every_gateway_fails_the_caller_gets_500_not_503(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    final = final_of(run.send(answer(second, 503), GW2))
    assert (final.status, final.reason) == (500, "Server Internal Error (next hop unavailable)")


def test_every_gateway_known_down_is_480_saying_how_many(run: Run) -> None:
    run.table.health.set("1", "down")
    run.table.health.set("2", "down")
    final = final_of(run.send(invite()))
    assert (final.status, final.reason) == (
        480,
        "Temporarily Unavailable (2 gateways down or unresolvable)",
    )


def test_the_no_route_reason_header_is_spelled_as_sip_expects(run: Run) -> None:
    [_trying, data] = sent_to(run.send(invite(uri=f"sip:999@{EDGE}")), CALLER)
    assert b'\r\nReason: SIP;cause=404;text="no route"\r\n' in data


def test_the_next_hop_a_strict_router_gets_the_request_uri_and_the_rest_as_route(
    run: Run,
) -> None:
    data = in_dialog("BYE", 70).replace(
        f"Route: <sip:{EDGE}:5060;lr>".encode(),
        f"Route: <sip:{EDGE}:5060;lr>, <sip:{GW1.host}:5060>".encode(),
    )
    forwarded = only_request(run.send(data, TRUSTED_PEER), GW1)
    assert forwarded.uri_text == f"sip:{GW1.host}:5060"
    assert forwarded.headers("route") == [f"<sip:gw@{GW2.host}:5060>"]


def test_an_in_dialog_request_to_us_without_a_route_is_481(run: Run) -> None:
    lost = in_dialog("BYE", 70).replace(f"Route: <sip:{EDGE}:5060;lr>\r\n".encode(), b"")
    lost = lost.replace(f"BYE sip:gw@{GW2.host}:5060".encode(), f"BYE sip:{EDGE}:5060".encode())
    final = final_of(run.send(lost, TRUSTED_PEER), TRUSTED_PEER)
    assert (final.status, final.reason) == (481, "no dialog route to follow")


@pytest.mark.parametrize(("method", "recorded"), [("INVITE", True), ("OPTIONS", False)])
def test_a_preloaded_route_is_followed_and_record_routed_if_it_makes_a_dialog(
    trusting_run: Run, method: str, recorded: bool
) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(trusting_run.send(data.replace(b"INVITE", method.encode())), GW1)
    assert bool(forwarded.headers("record-route")) is recorded


def test_a_strict_router_fix_up_keeps_the_other_routes_in_order(run: Run) -> None:
    data = invite(
        uri=f"sip:{EDGE}:5060;lr",
        extra=f"Route: <sip:a@{GW2.host}:5060;lr>, <sip:b@{GW1.host};lr>, <sip:1@{GW2.host}>\r\n",
    ).replace(b"To: <sip:14075551234@example.com>", b"To: <sip:x@example.com>;tag=t")
    forwarded = only_request(run.send(data, TRUSTED_PEER), GW2)
    assert forwarded.uri_text == f"sip:1@{GW2.host}"
    assert forwarded.headers("route") == [f"<sip:a@{GW2.host}:5060;lr>", f"<sip:b@{GW1.host};lr>"]
    assert b"\r\nRoute: <sip:a@" in forwarded.to_bytes()


def test_an_overloaded_edge_refuses_new_calls_with_retry_after(run: Run) -> None:
    shedder = LoadShedder()
    shedder.shedding = True
    run.proxy.shedder = shedder
    [data] = sent_to(run.send(invite()), CALLER)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (503, "Service Unavailable (overloaded)")
    assert b"\r\nRetry-After: 5\r\n" in data
    # A request inside a dialog is no new call: it goes on.
    assert only_request(run.send(in_dialog("BYE", 70), TRUSTED_PEER), GW2).method == "BYE"


def test_received_is_stamped_only_where_the_via_host_is_not_the_source() -> None:
    """§18.2.1: without rport, `received` goes on the Via whose host differs from the source."""
    run = core_run()
    natted = invite().replace(b";rport", b"")
    forwarded = only_request(run.send(natted), GW1)
    assert forwarded.vias[1].param("received") == CALLER.host
    direct = Destination("udp", "10.0.0.5", 5070)
    forwarded = only_request(core_run().send(natted, direct), GW1)
    assert forwarded.vias[1].param("received") is None


def test_every_request_sent_to_a_gateway_is_counted(run: Run) -> None:
    before = metrics.GATEWAY_ATTEMPTS["1"]
    run.send(invite())
    run.send(invite(branch="z9hG4bKc2").replace(b"call-1", b"call-2"))
    assert metrics.GATEWAY_ATTEMPTS["1"] == before + 2


def test_every_request_received_is_counted_by_its_method(run: Run) -> None:
    """A method outside the fourteen known ones counts as ``other``: a scanner inventing
    methods must not make a series of each."""
    before = metrics.REQUESTS["INVITE"], metrics.REQUESTS["other"]
    run.send(invite())
    run.send(invite(branch="z9hG4bKx2").replace(b"INVITE", b"XFOO"))
    assert (metrics.REQUESTS["INVITE"], metrics.REQUESTS["other"]) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert "XFOO" not in metrics.REQUESTS


def test_an_in_dialog_request_pops_both_of_our_record_routes(run: Run) -> None:
    """A dialog that came in over TCP and left over UDP has two entries of ours in its
    route set: both are popped, the request goes to the far end, not back to us."""
    tcp = signed(run.proxy, "old-call", f"<sip:{EDGE}:5060;transport=tcp;lr>")
    bye = (
        f"BYE sip:gw@{GW2.host}:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye2\r\n"
        f"Route: {signed(run.proxy, 'old-call')}, {tcp}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        "Call-ID: old-call\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    forwarded = only_request(run.send(bye), GW2)
    assert forwarded.headers("route") == []


def test_an_ack_to_a_tcp_hop_leaves_with_our_tcp_via(run: Run) -> None:
    """The stateless ACK's Via names the transport it leaves by, as a branch's does."""
    ack = in_dialog("ACK", 70, cseq=1).replace(
        f"ACK sip:gw@{GW2.host}:5060 ".encode(),
        f"ACK sip:gw@{GW2.host}:5060;transport=tcp ".encode(),
    )
    forwarded = only_request(run.send(ack, TRUSTED_PEER), replace(GW2, transport="tcp"))
    assert forwarded.top_via.transport == "TCP"


def test_a_retry_after_with_parameters_is_read_to_its_seconds(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, 503, "Retry-After: 30;duration=10;x=1\r\n"), GW1)
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, GatewayFailed) and event.retry_after == 30


def test_an_ack_with_an_unreadable_cseq_is_dropped_unanswered(run: Run) -> None:
    """An ACK is never answered, not even with the 400 its INVITE would get."""
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    assert statuses(run.send(bad)) == [400]
    ack = bad.replace(b"INVITE sip", b"ACK sip").replace(b"x INVITE", b"x ACK")
    assert run.send(ack) == []


def test_a_strict_routers_request_pops_our_other_route_before_the_last(run: Run) -> None:
    """Our two Record-Route entries (TCP in, UDP out): the strict router put one in the
    Request-URI; the other, before the last Route, is ours to pop too."""
    tcp = signed(run.proxy, "call-1", f"<sip:{EDGE}:5060;transport=tcp;lr>")
    data = invite(
        uri=signed(run.proxy, "call-1", f"<sip:{EDGE}:5060;lr>")[1:-1],
        extra=f"Route: {tcp}, <sip:14075551234@{GW2.host}:5060>\r\n",
    ).replace(b"To: <sip:14075551234@example.com>", b"To: <sip:x@example.com>;tag=t")
    forwarded = only_request(run.send(data), GW2)
    assert forwarded.uri_text == f"sip:14075551234@{GW2.host}:5060"
    assert forwarded.headers("route") == []
