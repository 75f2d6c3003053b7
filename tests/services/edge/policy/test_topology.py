"""Topology hiding through the proxy core: what the edge answers ITSELF to the hidden side.

A gateway's in-dialog request is restored to the inside's values before the
edge handles it; the responses the edge makes on its own (100 Trying, 483,
481, 500, a CANCEL's 200) are built from that restored copy and must be
hidden again, exactly like the responses it relays.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest

from services.edge.policy import NO_KEYS_HEADER
from services.edge.proxy.actions import Publish, Send
from services.edge.proxy.core import Proxy
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from shared.contracts.protection import ScannerFlagged
from shared.routing_table.model import Gateway, Rule
from shared.routing_table.topology import TargetTopology
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from tests.services.edge.policy.support import (
    EDGE,
    GW1,
    GW2,
    INSIDE,
    Run,
    answer,
    invite,
    policy_run,
    requests_to,
    responses_to,
)

INSIDE_PROXY = Destination("udp", "10.0.0.7", 5060)
"""The inside's Record-Route: the gateway's in-dialog requests go back through it."""
TCP_GW1 = replace(GW1, transport="tcp")
INSIDE_VALUES = ("inside-call-1", "10.0.0.5", "10.0.0.6", "10.0.0.7", "alice@10.0.0.5")


@pytest.fixture
def run() -> Run:
    found = policy_run()
    hiding = TargetTopology(mask_call_id=True)
    found.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    return found


def hidden_call(run: Run) -> Request:
    """A call from the inside to the hidden gateway, answered; the INVITE the gateway got."""
    [forwarded] = requests_to(run.send(invite()), GW1)
    assert forwarded.call_id.startswith("CMH-")
    run.send(answer(forwarded, 200), GW1)
    return forwarded


def from_gateway(
    forwarded: Request,
    method: str,
    *,
    cseq: int = 7,
    max_forwards: int = 70,
    branch: str = "z9hG4bKgw7",
) -> bytes:
    """The gateway's in-dialog request in the dialog `forwarded` created (what it saw)."""
    contact = forwarded.contacts[0].uri
    routes = ", ".join(forwarded.headers("record-route"))
    return (
        f"{method} {contact} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {GW1.host}:5060;branch={branch}\r\n"
        f"Route: {routes}\r\n"
        f"From: {forwarded.header('to')};tag=gw\r\n"
        f"To: {forwarded.header('from')}\r\n"
        f"Call-ID: {forwarded.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def assert_hidden(responses: list[Response], forwarded: Request) -> None:
    """Each response carries what the gateway sent, nothing of the inside."""
    assert responses
    for response in responses:
        text = response.to_bytes().decode()
        for value in INSIDE_VALUES:
            assert value not in text, (value, text)
        assert response.call_id == forwarded.call_id
        assert (response.top_via.host, response.top_via.port) == (GW1.host, 5060)
        assert response.from_.uri == forwarded.to.uri
        assert response.to.uri == forwarded.from_.uri


def test_483_to_a_gateway_in_dialog_request_is_hidden(run: Run) -> None:
    forwarded = hidden_call(run)
    actions = run.send(from_gateway(forwarded, "BYE", max_forwards=0), GW1)
    responses = responses_to(actions, GW1)
    assert [r.status for r in responses] == [483]
    assert_hidden(responses, forwarded)
    assert requests_to(actions, INSIDE_PROXY) == []


def test_trying_and_500_to_a_gateway_reinvite_are_hidden(run: Run) -> None:
    forwarded = hidden_call(run)
    actions = run.send(from_gateway(forwarded, "INVITE"), GW1)
    [to_inside] = requests_to(actions, INSIDE_PROXY)
    assert to_inside.call_id == "inside-call-1@10.0.0.5"  # restored for the inside
    [client] = [a.client for a in actions if isinstance(a, Send) and a.client is not None]
    failed = run.proxy.transport_failed(client, run.now)  # the inside is unreachable
    responses = responses_to(actions + failed, GW1)
    assert [r.status for r in responses] == [100, 500]
    assert_hidden(responses, forwarded)


def test_a_cancel_of_a_gateway_reinvite_is_answered_hidden(run: Run) -> None:
    forwarded = hidden_call(run)
    reinvite = from_gateway(forwarded, "INVITE", branch="z9hG4bKgw8")
    [to_inside] = requests_to(run.send(reinvite, GW1), INSIDE_PROXY)
    run.send(answer(to_inside, 180), INSIDE_PROXY)
    cancel = from_gateway(forwarded, "CANCEL", branch="z9hG4bKgw8")
    actions = run.send(cancel, GW1)
    responses = responses_to(actions, GW1)
    assert [r.status for r in responses] == [200]
    assert_hidden(responses, forwarded)
    assert [r.method for r in requests_to(actions, INSIDE_PROXY)] == ["CANCEL"]


def test_a_stateless_400_to_a_restored_request_is_made_from_what_was_sent(run: Run) -> None:
    forwarded = hidden_call(run)
    bye = from_gateway(forwarded, "BYE").replace(b"CSeq: 7 BYE", b"CSeq: 7 OPTIONS")
    responses = responses_to(run.send(bye, GW1), GW1)
    assert [r.status for r in responses] == [400]
    assert_hidden(responses, forwarded)


def test_without_hiding_the_edge_answers_from_the_request_unchanged() -> None:
    run = policy_run()
    [forwarded] = requests_to(run.send(invite()), GW1)
    assert forwarded.call_id == "inside-call-1@10.0.0.5"
    run.send(answer(forwarded, 200), GW1)
    bye = from_gateway(forwarded, "BYE", max_forwards=0)
    [response] = responses_to(run.send(bye, GW1), GW1)
    assert (response.status, response.call_id) == (483, "inside-call-1@10.0.0.5")


def test_a_restored_request_is_no_scanner_even_from_an_untrusted_source() -> None:
    run = policy_run(trusted=False)
    hiding = TargetTopology(mask_call_id=True)
    run.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    forwarded = hidden_call(run)
    bye = from_gateway(forwarded, "BYE").replace(
        b"Max-Forwards", b"User-Agent: friendly-scanner\r\nMax-Forwards"
    )
    assert [r.method for r in requests_to(run.send(bye, GW1), INSIDE_PROXY)] == ["BYE"]
    # The same User-Agent without a token that opens is a scanner's: dropped.
    foreign = bye.replace(b";th=", b";xx=")
    actions = run.send(foreign.replace(b"z9hG4bKgw7", b"z9hG4bKgw9"), GW1)
    assert [type(action.event) for action in actions if isinstance(action, Publish)] == [
        ScannerFlagged
    ]
    assert [action for action in actions if not isinstance(action, Publish)] == []


def test_the_proxy_forgets_restored_transactions_when_they_end(run: Run) -> None:
    forwarded = hidden_call(run)
    run.send(from_gateway(forwarded, "BYE", max_forwards=0), GW1)
    proxy: Proxy = run.proxy
    assert len(proxy._restored) == 1
    run.now += 40
    proxy.expire(run.now)
    assert proxy._restored == {}


# ----- hiding asked for, CALLMESH_TOPOLOGY_KEYS unset ---------------------------------------


def keyless_run() -> Run:
    run = policy_run(topology=False)
    hiding = TargetTopology()
    run.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    return run


def test_without_keys_a_hidden_gateway_is_never_sent_to_and_the_caller_gets_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = keyless_run()
    with caplog.at_level(logging.ERROR, logger="callmesh.edge"):
        actions = run.send(invite())
        again = run.send(invite().replace(b"z9hG4bKin1", b"z9hG4bKin2").replace(b"-1@", b"-2@"))
    assert requests_to(actions + again, GW1) == []
    for sent in (actions, again):
        trying, failure = responses_to(sent, INSIDE)
        assert (trying.status, failure.status) == (100, 500)
        assert failure.header("reason") == NO_KEYS_HEADER
        assert "CALLMESH_TOPOLOGY_KEYS" in failure.reason
        assert failure.to_tag
    [line] = [r.getMessage() for r in caplog.records if "CALLMESH_TOPOLOGY_KEYS" in r.getMessage()]
    assert "gateway 1" in line


def test_without_keys_the_next_gateway_without_hiding_takes_the_call() -> None:
    run = keyless_run()
    run.table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))
    actions = run.send(invite())
    assert requests_to(actions, GW1) == []
    [forwarded] = requests_to(actions, GW2)
    assert forwarded.call_id == "inside-call-1@10.0.0.5"
    assert [r.status for r in responses_to(actions, INSIDE)] == [100]


# ----- what the edge answers ITSELF to the inside of a hidden call --------------------------


def test_a_silent_hidden_gateway_gets_the_caller_a_408_with_its_own_identities(run: Run) -> None:
    """The 408 once carried the masked Call-ID and the rewritten From, so the caller's
    transaction never matched it and it retransmitted until its own timeout."""
    sent = invite()
    [forwarded] = requests_to(run.send(sent), GW1)
    assert forwarded.call_id.startswith("CMH-")  # the hop is hidden
    run.now += 2.1  # fr: the gateway never answered
    [timeout] = [r for r in responses_to(run.proxy.expire(run.now), INSIDE) if r.status >= 200]
    assert timeout.status == 408
    assert timeout.call_id == "inside-call-1@10.0.0.5"
    assert timeout.header("from") == '"Alice" <sip:alice@10.0.0.5>;tag=a1'
    assert [(via.host, via.branch) for via in timeout.vias] == [
        ("10.0.0.5", "z9hG4bKin1"),
        ("10.0.0.6", "z9hG4bKin0"),
    ]
    assert "CMH-" not in timeout.to_bytes().decode()


# ----- the stateless ACK of a hidden dialog --------------------------------------------------


def test_the_insides_ack_to_a_hidden_gateways_200_leaves_hidden(run: Run) -> None:
    """The ACK of a 2xx is forwarded statelessly (§16.11), and hidden like every request."""
    [forwarded] = requests_to(run.send(invite()), GW1)
    [ok] = responses_to(run.send(answer(forwarded, 200), GW1), INSIDE)
    assert ok.call_id == "inside-call-1@10.0.0.5"  # restored for the inside
    edge_route = ok.headers("record-route")[0]  # ours; the inside's proxy has popped its own
    ack = (
        f"ACK {ok.contacts[0].uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {INSIDE.host}:{INSIDE.port};branch=z9hG4bKack1\r\n"
        f"Route: {edge_route}\r\n"
        f"From: {ok.header('from')}\r\nTo: {ok.header('to')}\r\n"
        f"Call-ID: {ok.call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    [sent] = requests_to(run.send(ack), GW1)
    assert sent.method == "ACK"
    assert sent.call_id == forwarded.call_id  # the masked one the gateway knows
    assert "inside-call-1" not in sent.to_bytes().decode()


def test_a_late_200_retransmission_from_the_inside_goes_out_hidden(run: Run) -> None:
    """Past its transaction (64·T1), a 2xx is relayed statelessly by our Via: still hidden."""
    forwarded = hidden_call(run)
    [to_inside] = requests_to(run.send(from_gateway(forwarded, "INVITE"), GW1), INSIDE_PROXY)
    ok = answer(to_inside, 200)
    [first] = [r for r in responses_to(run.send(ok, INSIDE_PROXY), GW1) if r.status == 200]
    run.now += 40
    run.proxy.expire(run.now)
    [again] = responses_to(run.send(ok, INSIDE_PROXY), GW1)
    assert again.status == 200
    assert_hidden([again], forwarded)
    assert again.to_bytes() == first.to_bytes()


@pytest.mark.parametrize("method", ["BYE", "INVITE"])
def test_the_insides_answer_to_a_gateways_in_dialog_request_goes_out_hidden(
    run: Run, method: str
) -> None:
    forwarded = hidden_call(run)
    [to_inside] = requests_to(run.send(from_gateway(forwarded, method), GW1), INSIDE_PROXY)
    assert to_inside.call_id == "inside-call-1@10.0.0.5"  # restored for the inside
    responses = responses_to(run.send(answer(to_inside, 200), INSIDE_PROXY), GW1)
    assert [r.status for r in responses] == [200]
    assert_hidden(responses, forwarded)


def test_a_trusted_gateways_request_out_of_dialog_along_the_hidden_route_keeps_its_plan(
    run: Run,
) -> None:
    """No To tag, so no dialog: the request is routed as a new one along its preloaded Route
    (a trusted peer may), and the inside's answer must still leave hidden, by the restored
    request's plan that the new transaction carries."""
    run.proxy.dialogs = DialogGate(RecordRouteSigner.ephemeral(), lambda source: True)
    forwarded = hidden_call(run)
    message = re.sub(rb"(To: [^\r]*?);tag=[^;\r]*", rb"\1", from_gateway(forwarded, "MESSAGE"))
    assert b"tag=" not in message.split(b"To: ", 1)[1].split(b"\r\n", 1)[0]
    [to_inside] = requests_to(run.send(message, GW1), INSIDE_PROXY)
    assert to_inside.call_id == "inside-call-1@10.0.0.5"  # restored for the inside
    responses = responses_to(run.send(answer(to_inside, 200), INSIDE_PROXY), GW1)
    assert [r.status for r in responses] == [200]
    assert_hidden(responses, forwarded)


def test_a_udp_retry_the_table_now_hides_without_keys_fails_over_to_the_next_gateway() -> None:
    """§18.1.1's UDP retry is a new branch: a policy may refuse it, and the next hop is tried."""
    run = policy_run(topology=False)
    run.proxy.interfaces = Interfaces(
        [Interface("udp", EDGE, 5060, 5060), Interface("tcp", EDGE, 5060, 5060)]
    )
    run.table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))
    large = invite(extra=f"X-Pad: {'p' * 1400}\r\n")
    [over_tcp] = [a for a in run.send(large) if isinstance(a, Send) and a.destination == TCP_GW1]
    assert over_tcp.client is not None
    hiding = TargetTopology()
    run.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    failed = run.proxy.transport_failed(over_tcp.client, run.now)
    assert requests_to(failed, GW1) == []
    [next_gateway] = requests_to(failed, replace(GW2, transport="tcp"))
    assert next_gateway.method == "INVITE"


def test_an_answer_of_the_edges_own_is_hidden_for_the_socket_it_leaves_by() -> None:
    """A TCP socket on another address listed first: a UDP gateway's 483 still names the UDP
    socket's, so the identities it hides come out as the gateway saw them in the call."""
    run = policy_run()
    run.proxy.interfaces = Interfaces(
        [Interface("tcp", "192.0.2.11", 5060, 5060), Interface("udp", EDGE, 5060, 5060)]
    )
    hiding = TargetTopology(mask_call_id=True)
    run.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    forwarded = hidden_call(run)
    actions = run.send(from_gateway(forwarded, "BYE", max_forwards=0), GW1)
    responses = responses_to(actions, GW1)
    assert [r.status for r in responses] == [483]
    assert_hidden(responses, forwarded)
    assert "192.0.2.11" not in responses[0].to_bytes().decode()


def test_a_late_200_is_hidden_for_the_socket_it_leaves_by() -> None:
    """Relayed without a transaction, by our Via alone: hidden as the UDP socket's, not as
    the TCP socket listed first, so the gateway sees the identities it saw in the call."""
    run = policy_run()
    run.proxy.interfaces = Interfaces(
        [Interface("tcp", "192.0.2.11", 5060, 5060), Interface("udp", EDGE, 5060, 5060)]
    )
    hiding = TargetTopology(mask_call_id=True)
    run.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", topology_hiding=hiding))
    forwarded = hidden_call(run)
    [to_inside] = requests_to(run.send(from_gateway(forwarded, "INVITE"), GW1), INSIDE_PROXY)
    ok = answer(to_inside, 200)
    [first] = [r for r in responses_to(run.send(ok, INSIDE_PROXY), GW1) if r.status == 200]
    run.now += 40
    run.proxy.expire(run.now)
    [again] = responses_to(run.send(ok, INSIDE_PROXY), GW1)
    assert again.to_bytes() == first.to_bytes()
    assert "192.0.2.11" not in again.to_bytes().decode()


def test_a_restored_transaction_over_tcp_is_forgotten_as_soon_as_it_is_answered(run: Run) -> None:
    """Over a connection a non-INVITE transaction ends with its final answer, no timer
    left to fire: the answer itself must drop the restored context, or it leaks."""
    forwarded = hidden_call(run)
    bye = from_gateway(forwarded, "BYE", max_forwards=0).replace(b"UDP", b"TCP", 1)
    actions = run.send(bye, TCP_GW1)
    assert [r.status for r in responses_to(actions, TCP_GW1)] == [483]
    assert run.proxy._restored == {}


def test_a_restored_invite_over_tcp_is_forgotten_with_the_ack_of_its_failure(run: Run) -> None:
    """Over a connection the ACK of a failure ends the INVITE transaction at once (Timer I
    is zero): that ACK must drop the restored context, or it leaks."""
    forwarded = hidden_call(run)
    reinvite = from_gateway(forwarded, "INVITE", max_forwards=0).replace(b"UDP", b"TCP", 1)
    assert [r.status for r in responses_to(run.send(reinvite, TCP_GW1), TCP_GW1)] == [483]
    assert len(run.proxy._restored) == 1
    ack = reinvite.replace(b"INVITE sip", b"ACK sip").replace(b"7 INVITE", b"7 ACK")
    run.send(ack, TCP_GW1)
    assert run.proxy._restored == {}
