"""No open relay: in-dialog requests follow only a Record-Route the edge signed.

Driven through the sans-IO core as an attacker would drive the edge: a
stranger's request with a To tag and no signed Route of ours is answered once,
statelessly, and nothing leaves toward the address it names.
"""

from __future__ import annotations

import hmac
import logging

import pytest
from prometheus_client import REGISTRY

from services.edge.metrics import RELAY_REFUSED
from services.edge.proxy.actions import Send
from services.edge.proxy.dialogs import RecordRouteSigner, own_contact
from services.edge.topology import Keyring, TopologyKey, new_secret
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    PEER,
    Run,
    answer,
    core_run,
    invite,
    only_request,
    sent_to,
    signed,
    statuses,
)


@pytest.fixture
def run() -> Run:
    return core_run()


def in_dialog(
    method: str,
    uri: str = f"sip:4420999@{GW1.host}",
    *,
    routes: str = "",
    call_id: str = "call-1",
    branch: str = "z9hG4bKd1",
    to_tag: str = ";tag=2",
) -> bytes:
    route = f"Route: {routes}\r\n" if routes else ""
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch={branch};rport\r\n"
        f"{route}"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: <sip:4420999@example.com>{to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 2 {method}\r\n"
        "Contact: <sip:alice@10.0.0.5:5070>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def refused() -> float:
    """`callmesh_edge_relay_refused`, all reasons."""
    return sum(RELAY_REFUSED.values())


def only_answer(run: Run, data: bytes, source: Destination = CALLER) -> Response:
    """What the edge does with `data`: one response back to `source`, nothing anywhere else."""
    actions = run.send(data, source)
    assert [a.destination for a in actions if isinstance(a, Send)] == [source]
    [response] = [parse_message(a.data) for a in actions if isinstance(a, Send)]
    assert isinstance(response, Response)
    assert run.later(40.0) == []  # stateless: never retransmitted (no amplifier)
    return response


def call(run: Run) -> Response:
    """A call from the caller to gateway 1, answered: the 200 the caller got."""
    forwarded = only_request(run.send(invite()), GW1)
    [ok] = sent_to(run.send(answer(forwarded, 200), GW1), CALLER)
    response = parse_message(ok)
    assert isinstance(response, Response) and response.status == 200
    return response


def routes_of(response: Response) -> str:
    """The caller's route set from a 2xx's Record-Route (§12.1.2: the list, reversed)."""
    return ", ".join(reversed(response.headers("record-route")))


# ----- a stranger's in-dialog requests ----------------------------------------------------


@pytest.mark.parametrize("method", ["INVITE", "BYE", "INFO", "MESSAGE", "UPDATE", "NOTIFY"])
def test_a_forged_to_tag_without_our_route_is_404_and_goes_nowhere(run: Run, method: str) -> None:
    before = refused()
    response = only_answer(run, in_dialog(method))
    assert (response.status, response.reason) == (404, "Not Found (no dialog here)")
    assert response.call_id == "call-1"
    assert refused() == before + 1


def test_our_route_without_a_token_is_403(run: Run) -> None:
    data = in_dialog("INVITE", routes=f"<sip:{EDGE}:5060;lr>")
    assert only_answer(run, data).status == 403


def test_a_forged_token_is_403(run: Run) -> None:
    forged = f"<sip:{EDGE}:5060;lr;cm-rr=0.{'ab' * 12}>"
    for token in (forged, forged.replace("=0.", "=x."), forged.replace("=0.", "=99999.")):
        assert only_answer(run, in_dialog("BYE", routes=token)).status == 403


@pytest.mark.parametrize(
    "params",
    [
        f";cm-rr=0.%C3%A9{'ab' * 11}",  # a token beyond ASCII, once unescaped
        f";cm-rr=%C3%A9.{'ab' * 12}",  # a key id beyond ASCII
        f";cm-flow=%FF;cm-rr=0.{'ab' * 12}",  # a flow holding a byte no UTF-8 holds
    ],
)
def test_a_token_or_flow_no_signer_writes_is_403_not_a_handlers_bug(run: Run, params: str) -> None:
    """Both raised out of the token's check (`hmac.compare_digest` refuses text beyond ASCII,
    and the flow's encoding a lone surrogate), so the request was dropped unanswered."""
    route = f"<sip:{EDGE}:5060;lr{params}>"
    assert only_answer(run, in_dialog("BYE", routes=route)).status == 403


def test_the_check_refuses_what_no_signer_writes_without_raising() -> None:
    signer = RecordRouteSigner.ephemeral()
    token = signer.sign("c", "flow")
    assert signer.verify(token, "c", "flow")
    assert not signer.verify(token[:-1] + "\u00e9", "c", "flow")
    assert not signer.verify(token, "c", "fl\udcffow")
    assert not signer.verify(token, "c\udcff", "flow")


def test_a_record_route_captured_from_one_call_does_not_open_another(run: Run) -> None:
    ok = call(run)
    stolen = routes_of(ok)
    data = in_dialog("INVITE", routes=stolen, call_id="another-call")
    assert only_answer(run, data).status == 403


def test_a_token_from_another_deployment_is_403(run: Run) -> None:
    other = core_run()
    data = in_dialog("BYE", routes=signed(other.proxy, "call-1"))
    assert only_answer(run, data).status == 403


def test_an_ack_without_our_signed_route_is_absorbed(run: Run) -> None:
    assert run.send(in_dialog("ACK")) == []
    assert run.send(in_dialog("ACK", routes=f"<sip:{EDGE}:5060;lr>")) == []


def test_an_ack_without_a_to_tag_is_absorbed_from_anyone(run: Run) -> None:
    for data in (
        in_dialog("ACK", to_tag="", uri="sip:x@edge.example"),  # nothing to resolve either
        in_dialog("ACK", to_tag="", routes=signed(run.proxy, "call-1")),
    ):
        assert run.send(data) == []
        assert run.send(data, PEER) == []


def test_each_refusal_is_counted_and_logged_by_its_own_reason(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's `callmesh_edge_relay_refused{reason=…}` says which check refused."""
    before = dict(RELAY_REFUSED)
    with caplog.at_level(logging.INFO, logger="callmesh.edge"):
        run.send(in_dialog("ACK", to_tag="", uri="sip:x@edge.example"))
        only_answer(run, invite(extra=f"Route: <sip:{EDGE}:5060;lr>, <sip:{GW2.host};lr>\r\n"))
    counted = {
        reason: RELAY_REFUSED[reason] - before.get(reason, 0)
        for reason in ("no_to_tag", "preloaded_route")
    }
    assert counted == {"no_to_tag": 1, "preloaded_route": 1}
    [ack, route] = [r.getMessage() for r in caplog.records]
    assert ack.endswith("(no_to_tag): ACK without a dialog")
    assert route.endswith("(preloaded_route): preloaded Route")


def test_each_refusal_is_one_info_line(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="callmesh.edge"):
        run.send(in_dialog("INVITE"))
        run.send(in_dialog("ACK"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(f"refused to relay INVITE from {CALLER.host}:{CALLER.port}")
    assert "no_route" in lines[0]


# ----- preloaded Route sets --------------------------------------------------------------


def test_a_strangers_preloaded_route_past_the_edge_is_403(run: Run) -> None:
    data = invite(extra=f"Route: <sip:{EDGE}:5060;lr>, <sip:{GW2.host};lr>\r\n")
    response = only_answer(run, data)
    assert (response.status, response.reason) == (403, "Forbidden (preloaded Route)")


def test_a_route_naming_only_the_edge_is_routed_as_usual(run: Run) -> None:
    data = invite(extra=f"Route: <sip:{EDGE}:5060;lr>\r\n")
    forwarded = only_request(run.send(data), GW1)
    assert forwarded.headers("route") == []


def test_a_strangers_route_to_one_of_our_flows_needs_a_token_for_its_call(run: Run) -> None:
    """A flow token copied from a Record-Route is no way to reach that phone in a new call."""
    copied = invite(extra=f"Route: <sip:{EDGE}:5060;lr;cm-flow=FLOW1>\r\n")
    response = only_answer(run, copied)
    assert (response.status, response.reason) == (403, "Forbidden (not our dialog route)")
    borrowed = run.proxy.dialogs.route_params("another-call", "FLOW1")
    other = invite(extra=f"Route: <sip:{EDGE}:5060;lr{borrowed}>\r\n", branch="z9hG4bKc2")
    assert only_answer(run, other).status == 403
    # An edge handing the call over signs the Route for its Call-ID: followed.
    own = run.proxy.dialogs.route_params("call-1", "FLOW1")
    handed = invite(extra=f"Route: <sip:{EDGE}:5060;lr{own}>\r\n", branch="z9hG4bKc3")
    assert only_request(run.send(handed), GW1).headers("route") == []
    # A trusted peer needs no token.
    trusted = invite(extra=f"Route: <sip:{EDGE}:5060;lr;cm-flow=FLOW1>\r\n", branch="z9hG4bKc4")
    assert only_request(run.send(trusted, PEER), GW1).method == "INVITE"


def test_a_relayed_dialogs_token_signs_its_flow_too(run: Run) -> None:
    """With the media mark signed beside it, the flow still counts: a token is for one flow."""
    params = run.proxy.dialogs.route_params("call-1", "FLOW1", media=True)
    moved = params.replace("cm-flow=FLOW1", "cm-flow=FLOW2")
    other = invite(extra=f"Route: <sip:{EDGE}:5060;lr{moved}>\r\n", branch="z9hG4bKc2")
    assert only_answer(run, other).status == 403
    handed = invite(extra=f"Route: <sip:{EDGE}:5060;lr{params}>\r\n")
    assert only_request(run.send(handed), GW1).headers("route") == []  # the control


def test_a_contact_of_ours_is_one_at_our_address_only(run: Run) -> None:
    """`cm-ct` parameters on someone else's host are that host's business, not our Contact."""
    params = run.proxy.dialogs.contact_params("call-1", "FLOW1", "T", media=False)
    ours = parse_message(invite(uri=f"sip:alice@{EDGE}:5060{params}"))
    theirs = parse_message(invite(uri=f"sip:alice@{GW2.host}:5060{params}"))
    assert isinstance(ours, Request) and isinstance(theirs, Request)
    is_ours = run.proxy.interfaces.is_ours
    assert own_contact(ours, is_ours) is not None  # the control
    assert own_contact(theirs, is_ours) is None


def test_a_trusted_peers_preloaded_route_is_followed(run: Run) -> None:
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW2.host};lr>\r\n")
    assert only_request(run.send(data, PEER), GW2).uri_text == "sip:bob@example.com"


# ----- what keeps working ----------------------------------------------------------------


def test_the_callers_ack_and_bye_follow_the_signed_record_route(run: Run) -> None:
    routes = routes_of(call(run))
    ack = in_dialog("ACK", "sip:gw@203.0.113.1", routes=routes, branch="z9hG4bKa")
    assert only_request(run.send(ack), GW1).method == "ACK"
    bye = in_dialog("BYE", "sip:gw@203.0.113.1", routes=routes)
    forwarded = only_request(run.send(bye), GW1)
    assert forwarded.headers("route") == []
    assert statuses(run.send(answer(forwarded, 200), GW1)) == [200]


def test_a_trusted_peer_keeps_loose_routing_without_a_token(run: Run) -> None:
    data = in_dialog("BYE", f"sip:gw@{GW2.host}", routes=f"<sip:{EDGE}:5060;lr>")
    assert only_request(run.send(data, PEER), GW2).method == "BYE"
    info = in_dialog("INFO", branch="z9hG4bKd2")  # no Route: to its Request-URI
    assert only_request(run.send(info, PEER), GW1).method == "INFO"


def test_another_edge_with_the_key_and_the_edge_after_a_restart_take_the_bye() -> None:
    keyring = Keyring.parse(f"1:{new_secret()}")
    routes = routes_of(call(core_run(RecordRouteSigner(keyring))))
    restarted = core_run(RecordRouteSigner(keyring))
    bye = in_dialog("BYE", "sip:gw@203.0.113.1", routes=routes)
    assert only_request(restarted.send(bye), GW1).method == "BYE"


def test_rotation_verifies_the_previous_key_and_signs_with_the_current() -> None:
    old, new = f"1:{new_secret()}", f"2:{new_secret()}"
    token = RecordRouteSigner(Keyring.parse(old)).sign("c", None)
    rotating = RecordRouteSigner(Keyring.parse(f"{new},{old}"))
    assert rotating.verify(token, "c", None)
    assert rotating.sign("c", None).startswith("2.")
    assert not RecordRouteSigner(Keyring.parse(new)).verify(token, "c", None)


def test_a_token_is_the_same_however_many_were_made_before() -> None:
    """Every edge of a deployment, old and new builds alike, writes the same token for a
    dialog: key id, then HMAC-SHA256 under the key derived from the secret, 12 bytes in hex."""
    secret = bytes(range(32))
    signer = RecordRouteSigner(Keyring(TopologyKey(7, secret)))
    derived = hmac.digest(secret, b"callmesh record-route", "sha256")
    for call_id, flow in (("c1", None), ("c2", "FLOW"), ("c1", None)):
        text = call_id if flow is None else f"{call_id}\n{flow}"
        expected = "7." + hmac.digest(derived, text.encode(), "sha256")[:12].hex()
        assert signer.sign(call_id, flow) == expected
        assert signer.verify(expected, call_id, flow)


def test_the_token_binds_the_flow_beside_it(run: Run) -> None:
    params = run.proxy.dialogs.route_params("call-1", "FLOW1")
    assert params.startswith(";cm-flow=FLOW1;cm-rr=")
    swapped = f"<sip:{EDGE}:5060;lr{params.replace('FLOW1', 'FLOW2')}>"
    assert only_answer(run, in_dialog("BYE", routes=swapped)).status == 403


def test_a_strict_routers_request_uri_carries_the_token(run: Run) -> None:
    uri = signed(run.proxy, "call-1")[1:-1]
    data = in_dialog("BYE", uri, routes=f"<sip:gw@{GW2.host}:5060>")
    forwarded = only_request(run.send(data), GW2)
    assert isinstance(forwarded, Request)
    assert forwarded.uri_text == f"sip:gw@{GW2.host}:5060"


def test_a_cancel_of_a_reinvite_meets_its_transaction_whatever_its_route(run: Run) -> None:
    """A CANCEL is never relayed by its route (it finds its INVITE's transaction or gets 481),
    so a stranger's CANCEL with a To tag is not held to the signed route."""
    routes = routes_of(call(run))
    reinvite = in_dialog("INVITE", "sip:gw@203.0.113.1", routes=routes, branch="z9hG4bKre")
    forwarded = only_request(run.send(reinvite), GW1)
    run.send(answer(forwarded, 180), GW1)
    cancel = in_dialog("CANCEL", "sip:gw@203.0.113.1", branch="z9hG4bKre")
    actions = run.send(cancel)
    assert statuses(actions) == [200]
    assert only_request(actions, GW1).method == "CANCEL"


def test_a_stray_cancel_with_a_to_tag_is_481(run: Run) -> None:
    stray = in_dialog("CANCEL", "sip:gw@203.0.113.1", branch="z9hG4bKnone")
    assert only_answer(run, stray).status == 481


def refused_for(reason: str) -> float:
    """`callmesh_edge_relay_refused` for one reason (what an operator's alert keys on)."""
    value = REGISTRY.get_sample_value("callmesh_edge_relay_refused_total", {"reason": reason})
    return value or 0.0


def test_a_forged_token_is_counted_as_a_bad_token_and_says_so(run: Run) -> None:
    before = refused_for("bad_token")
    response = only_answer(run, in_dialog("BYE", routes=f"<sip:{EDGE}:5060;lr>"))
    assert (response.status, response.reason) == (403, "Forbidden (not our dialog route)")
    copied = invite(extra=f"Route: <sip:{EDGE}:5060;lr;cm-flow=FLOW1>\r\n")
    assert only_answer(run, copied).status == 403
    assert refused_for("bad_token") == before + 2


def test_the_token_format_is_fixed_so_a_rolling_upgrade_keeps_dialogs() -> None:
    """Edges of two releases share a key during an upgrade: each must verify the other's
    tokens, so what is signed (Call-ID, and the flow when there is one) never changes."""
    signer = RecordRouteSigner(Keyring(TopologyKey(7, bytes(range(32)))))
    assert signer.sign("call-1", None) == "7.3b13421ab65405b9f51a7c4f"
    assert signer.sign("call-1", "FLOW1") == "7.856b03e02bc52d9a06c81754"
