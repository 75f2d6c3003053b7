"""RFC 3261 §18.1.1 in the proxy core: a request too large for UDP goes by TCP, says so in
our Via, and falls back to UDP when the TCP connection fails."""

from __future__ import annotations

from dataclasses import replace

from services.edge.proxy.actions import Action, Send
from shared.routing_table.model import Gateway, Rule
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    core_run,
    invite,
    statuses,
)

TCP_GW1 = replace(GW1, transport="tcp")
TCP_GW2 = replace(GW2, transport="tcp")
PINNED = Destination("udp", "203.0.113.3", 5060)
SDP = "v=0\r\n" + "a=x-padding:" + "p" * 1400 + "\r\n"


def large_invite(uri: str = f"sip:14075551234@{EDGE}", branch: str = "z9hG4bKc1") -> bytes:
    small = invite(uri=uri, branch=branch).decode()
    head = small.removesuffix("Content-Length: 0\r\n\r\n")
    body = f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
    return (head + body).encode()


def requests_to(actions: list[Action], destination: Destination) -> list[tuple[Request, Send]]:
    found = []
    for action in actions:
        if isinstance(action, Send) and action.destination == destination:
            message = parse_message(action.data)
            if isinstance(message, Request):
                found.append((message, action))
    return found


def test_a_request_over_the_mtu_goes_by_tcp_with_our_tcp_via() -> None:
    run = core_run()
    [(request, send)] = requests_to(run.send(large_invite()), TCP_GW1)
    assert len(send.data) > 1300
    top = request.vias[0]
    assert (top.transport, top.host, top.port) == ("TCP", EDGE, 5060)
    signed = run.proxy.dialogs.route_params(request.call_id, None)
    assert request.headers("record-route") == [
        f"<sip:{EDGE}:5060;transport=tcp;lr{signed}>",
        f"<sip:{EDGE}:5060;lr{signed}>",
    ]
    assert requests_to(run.send(invite(branch="z9hG4bKsmall")), GW1)  # a small one: UDP


def test_a_next_hop_naming_udp_or_a_zero_mtu_keeps_udp() -> None:
    run = core_run()
    run.table.put("gateway", "3", Gateway(address=f"sip:{PINNED.host};transport=udp"))
    run.table.put("rule", "r1999", Rule(prefix="1999", gateways=("3",)))
    [(request, _)] = requests_to(run.send(large_invite(f"sip:19995550000@{EDGE}")), PINNED)
    assert request.vias[0].transport == "UDP"
    assert requests_to(run.send(large_invite(branch="z9hG4bKc2")), TCP_GW1)  # the control
    off = core_run()
    off.proxy.udp_mtu = 0
    assert requests_to(off.send(large_invite()), GW1)


def test_a_failed_tcp_connection_is_retried_over_udp_then_fails_over() -> None:
    run = core_run()
    [(_, over_tcp)] = requests_to(run.send(large_invite()), TCP_GW1)
    assert over_tcp.client is not None
    retried = run.proxy.transport_failed(over_tcp.client, run.now)
    [(request, over_udp)] = requests_to(retried, GW1)  # same hop, as §18.1.1 says
    assert request.vias[0].transport == "UDP"
    assert [a for a in retried if isinstance(a, Send) and a.destination == CALLER] == []
    assert over_udp.client is not None
    failed_over = run.proxy.transport_failed(over_udp.client, run.now)
    assert requests_to(failed_over, TCP_GW2)  # the next gateway, large: TCP again


def test_a_call_cancelled_before_its_tcp_connection_failed_is_not_retried_over_udp() -> None:
    """The caller gave up: the failure ends the call with 487, no new INVITE goes out."""
    run = core_run()
    [(_, over_tcp)] = requests_to(run.send(large_invite()), TCP_GW1)
    assert over_tcp.client is not None
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    assert statuses(run.send(cancel)) == [200]
    failed = run.proxy.transport_failed(over_tcp.client, run.now)
    assert requests_to(failed, GW1) == []
    assert statuses(failed) == [487]


def test_an_mtu_of_one_byte_sends_every_request_by_tcp() -> None:
    """Any positive MTU is a limit (0 alone turns it off): the smallest one too."""
    run = core_run()
    run.proxy.udp_mtu = 1
    assert requests_to(run.send(invite()), TCP_GW1)


def test_a_branch_given_up_before_its_tcp_connection_failed_is_not_retried_over_udp() -> None:
    """Its timer moved the call on to the next gateway: the late failure sends nothing."""
    run = core_run()
    [(_, over_tcp)] = requests_to(run.send(large_invite()), TCP_GW1)
    assert over_tcp.client is not None
    assert requests_to(run.proxy.expire(run.now + 2.5), TCP_GW2)  # fr: given up
    assert run.proxy.transport_failed(over_tcp.client, run.now + 2.5) == []
