"""Topology hiding through a whole call, as two edges sharing one key would do it.

The edge's own steps (its Via, its Record-Route, popping its Route entries)
are done here by hand exactly as `services.edge.proxy` does them, so these
tests pin the contract between the proxy and the hiding functions.
"""

from __future__ import annotations

import pytest

from services.edge.topology import (
    EdgeAddress,
    InvalidTokenError,
    Keyring,
    hide_request,
    hide_response,
    new_secret,
    restore_request,
    restore_response,
)
from shared.routing_table.topology import TopologyOptions
from shared.sip.message import Request, Response, parse_message
from shared.sip.uri import SipUri

KEYS = f"1:{new_secret()}"
EDGE_HOSTS = {("203.0.113.5", 5060), ("192.168.1.1", 5060)}
EXT_RR = "<sip:203.0.113.5:5060;lr>"
INT_RR = "<sip:192.168.1.1:5060;lr>"
OPTIONS = TopologyOptions(mask_call_id=True)


def owns(host: str, port: int | None, _transport: str) -> bool:
    return (host.strip("[]"), port or 5060) in EDGE_HOSTS


EDGE = EdgeAddress("203.0.113.5", 5060, "udp", owns=owns)

SEED_INVITE = (
    "INVITE sip:+14075551234@192.168.1.5 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKproxy1;received=192.168.1.5\r\n"
    "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKast77;rport=5060\r\n"
    "Record-Route: <sip:192.168.1.5;lr>\r\n"
    "Max-Forwards: 69\r\n"
    'From: "1000" <sip:1000@192.168.1.10>;tag=as1234\r\n'
    "To: <sip:+14075551234@192.168.1.5>\r\n"
    'Contact: <sip:1000@192.168.1.10:5060;ob>;+sip.instance="<urn:uuid:1>";expires=60\r\n'
    "Call-ID: 3c2a7d1e@192.168.1.10\r\n"
    "CSeq: 102 INVITE\r\n"
    "P-Asserted-Identity: <sip:1000@192.168.1.10>\r\n"
    "User-Agent: Asterisk PBX 18\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)
INSIDE_VIAS = [
    "SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKproxy1;received=192.168.1.5",
    "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKast77;rport=5060",
]
EDGE_VIA = "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKedge1"


def parse_request(text: str) -> Request:
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def parse_response(text: str) -> Response:
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message


def head(message: Request | Response) -> str:
    wire = message.to_bytes().decode()
    return wire[: wire.index("\r\n\r\n")]


def edge_forwards_invite(keyring: Keyring) -> Request:
    """The seed INVITE as the edge sends it to the gateway with hiding on."""
    request = parse_request(SEED_INVITE)
    request.decrement_max_forwards()
    request.set_uri("sip:+14075551234@198.51.100.7:5060")
    request.add_record_route(INT_RR)
    request.add_record_route(EXT_RR)
    request.prepend_via(EDGE_VIA)
    return hide_request(request, EDGE, keyring, OPTIONS)


def gateway_answers(invite: Request, status: int = 200) -> Response:
    """What a gateway echoes: Vias, Record-Route, From, To (tagged), Call-ID, CSeq."""
    lines = [f"SIP/2.0 {status} OK"]
    lines += [f"Via: {via}" for via in invite.headers("via")]
    lines += [f"Record-Route: {rr}" for rr in invite.headers("record-route")]
    lines += [
        f"From: {invite.header('from')}",
        f"To: {invite.header('to')};tag=gw99",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {invite.header('cseq')}",
        "Contact: <sip:gw@198.51.100.7:5060>",
        "Content-Length: 0",
    ]
    return parse_response("\r\n".join(lines) + "\r\n\r\n")


def gateway_in_dialog(invite: Request, method: str, cseq: int) -> Request:
    """An in-dialog request from the gateway (the UAS): route set = RR, target = Contact."""
    contact = invite.contacts[0].uri
    lines = [f"{method} {contact} SIP/2.0", "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKgw"]
    lines += [f"Route: {rr}" for rr in invite.headers("record-route")]
    lines += [
        "Max-Forwards: 70",
        f"From: {invite.header('to')};tag=gw99",
        f"To: {invite.header('from')}",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:gw@198.51.100.7:5060>",
        "Content-Length: 0",
    ]
    return parse_request("\r\n".join(lines) + "\r\n\r\n")


def pop_own_routes(request: Request) -> None:
    while request.routes:
        uri = request.routes[0].uri
        assert isinstance(uri, SipUri)
        if not owns(uri.host, uri.port, "udp"):
            return
        request.pop_route()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(KEYS)


def test_seed_invite_leaves_with_only_the_edge_via_and_an_encoded_contact(
    keyring: Keyring,
) -> None:
    invite = edge_forwards_invite(keyring)

    assert len(invite.vias) == 1
    assert invite.top_via.branch == "z9hG4bKedge1"
    assert invite.top_via.host == "203.0.113.5"
    assert invite.top_via.param("th")
    contact = invite.contacts[0].uri
    assert (contact.host, contact.port, contact.user) == ("203.0.113.5", 5060, None)  # type: ignore[union-attr]
    assert contact.param("th")  # type: ignore[union-attr]
    assert len(invite.record_routes) == 1
    assert invite.record_routes[0].uri.host == "203.0.113.5"  # type: ignore[union-attr]
    assert "192.168." not in head(invite)
    assert invite.call_id.startswith("CMH-")
    assert invite.from_tag == "as1234"
    assert invite.from_.uri.host == "203.0.113.5"  # type: ignore[union-attr]
    invite.validate()


def test_hiding_is_deterministic_so_retransmissions_leave_identical(keyring: Keyring) -> None:
    assert edge_forwards_invite(keyring).to_bytes() == edge_forwards_invite(keyring).to_bytes()


def test_gateway_response_gets_the_inside_vias_and_route_set_back(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    response = restore_response(gateway_answers(invite), EDGE, Keyring.parse(KEYS), OPTIONS)

    assert response.headers("via") == [str(invite.top_via), *INSIDE_VIAS]
    response.pop_via()  # the edge's own step
    assert response.headers("via") == INSIDE_VIAS
    assert response.headers("record-route") == [EXT_RR, INT_RR, "<sip:192.168.1.5;lr>"]
    assert response.call_id == "3c2a7d1e@192.168.1.10"
    assert response.to_tag == "gw99"


def test_response_retransmission_restores_the_same(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    first = restore_response(gateway_answers(invite), EDGE, keyring, OPTIONS)
    again = restore_response(gateway_answers(invite), EDGE, keyring, OPTIONS)
    assert first.to_bytes() == again.to_bytes()


@pytest.mark.parametrize("method", ["BYE", "ACK", "INVITE"])
def test_gateway_in_dialog_request_is_restored_toward_the_inside(
    keyring: Keyring, method: str
) -> None:
    invite = edge_forwards_invite(keyring)
    request = gateway_in_dialog(invite, method, 7)
    # another edge, freshly started with the same key, receives it
    restored = restore_request(request, EDGE, Keyring.parse(KEYS), OPTIONS)

    assert restored.uri_text == "sip:1000@192.168.1.10:5060;ob"
    assert restored.headers("route") == [EXT_RR, INT_RR, "<sip:192.168.1.5;lr>"]
    pop_own_routes(restored)
    assert restored.headers("route") == ["<sip:192.168.1.5;lr>"]
    assert restored.call_id == "3c2a7d1e@192.168.1.10"
    assert restored.headers("via") == ["SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKgw"]
    restored.validate()


def test_inside_answer_to_a_gateway_reinvite_is_hidden_again(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    reinvite = restore_request(gateway_in_dialog(invite, "INVITE", 8), EDGE, keyring, OPTIONS)
    answer = parse_response(
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKgw\r\n"
        f"From: {reinvite.header('from')}\r\n"
        f"To: {reinvite.header('to')}\r\n"
        f"Call-ID: {reinvite.call_id}\r\n"
        "CSeq: 8 INVITE\r\n"
        "Contact: <sip:1000@192.168.1.11:5070>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    hidden = hide_response(answer, EDGE, keyring, OPTIONS)

    assert "192.168." not in head(hidden)
    assert hidden.call_id == invite.call_id  # the masked Call-ID the gateway knows
    # the refreshed target routes back to the new inside Contact
    bye = gateway_in_dialog(hidden_invite_with_contact(invite, hidden), "BYE", 9)
    restored = restore_request(bye, EDGE, keyring, OPTIONS)
    assert restored.uri_text == "sip:1000@192.168.1.11:5070"


def hidden_invite_with_contact(invite: Request, answer: Response) -> Request:
    request = invite.copy()
    request.set_header("Contact", answer.headers("contact")[0])
    return request


def test_caller_side_bye_going_out_is_hidden_again(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    bye = parse_request(
        "BYE sip:gw@198.51.100.7:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKproxy2\r\n"
        "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKast78;rport\r\n"
        f"Route: {INT_RR}, {EXT_RR}\r\n"
        "Max-Forwards: 69\r\n"
        'From: "1000" <sip:1000@192.168.1.10>;tag=as1234\r\n'
        "To: <sip:+14075551234@192.168.1.5>;tag=gw99\r\n"
        "Call-ID: 3c2a7d1e@192.168.1.10\r\n"
        "CSeq: 103 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    pop_own_routes(bye)
    bye.prepend_via("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKedge2")
    hidden = hide_request(bye, EDGE, keyring, OPTIONS)

    assert "192.168." not in head(hidden)
    assert len(hidden.vias) == 1
    assert hidden.call_id == invite.call_id
    assert not hidden.has_header("route")
    ok = restore_response(gateway_answers(hidden), EDGE, keyring, OPTIONS)
    ok.pop_via()
    assert ok.headers("via") == [
        "SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKproxy2",
        "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKast78;rport",
    ]
    assert ok.call_id == "3c2a7d1e@192.168.1.10"


def test_ack_going_out_keeps_no_inside_via_and_carries_no_token(keyring: Keyring) -> None:
    ack = parse_request(SEED_INVITE.replace("INVITE", "ACK"))
    ack.prepend_via(EDGE_VIA)
    hidden = hide_request(ack, EDGE, keyring, OPTIONS)
    assert hidden.headers("via") == [EDGE_VIA]


def test_call_from_the_outside_hides_the_inside_answer_and_routes_back(keyring: Keyring) -> None:
    """Inbound call: the gateway is the UAC, so its requests carry the route set reversed."""
    invite = parse_request(
        "INVITE sip:1000@203.0.113.5 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKin1\r\n"
        "Record-Route: <sip:198.51.100.9;lr>\r\n"
        "From: <sip:+14075550000@198.51.100.7>;tag=gw1\r\n"
        "To: <sip:1000@203.0.113.5>\r\n"
        "Call-ID: carrier-1@198.51.100.7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:gw@198.51.100.7>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    inward = restore_request(invite, EDGE, keyring, OPTIONS)
    assert inward.call_id == "CMH-~carrier-1@198.51.100.7"
    answer = parse_response(
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKin1\r\n"
        "Record-Route: <sip:192.168.1.5;lr>\r\n"
        f"Record-Route: {INT_RR}, {EXT_RR}\r\n"
        "Record-Route: <sip:198.51.100.9;lr>\r\n"
        "From: <sip:+14075550000@198.51.100.7>;tag=gw1\r\n"
        "To: <sip:1000@203.0.113.5>;tag=as9\r\n"
        f"Call-ID: {inward.call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:1000@192.168.1.10:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    hidden = hide_response(answer, EDGE, keyring, OPTIONS)
    assert "192.168." not in head(hidden)
    assert hidden.call_id == "carrier-1@198.51.100.7"
    rr = hidden.headers("record-route")
    assert len(rr) == 2
    assert rr[1] == "<sip:198.51.100.9;lr>"

    bye = parse_request(
        f"BYE {hidden.contacts[0].uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKin2\r\n"
        f"Route: {rr[0]}\r\n"
        "From: <sip:+14075550000@198.51.100.7>;tag=gw1\r\n"
        "To: <sip:1000@203.0.113.5>;tag=as9\r\n"
        "Call-ID: carrier-1@198.51.100.7\r\n"
        "CSeq: 2 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    restored = restore_request(bye, EDGE, keyring, OPTIONS)
    assert restored.uri_text == "sip:1000@192.168.1.10:5060"
    assert restored.headers("route") == [EXT_RR, INT_RR, "<sip:192.168.1.5;lr>"]
    assert restored.call_id == inward.call_id


def test_contact_parameters_pass_only_when_whitelisted(keyring: Keyring) -> None:
    options = TopologyOptions(
        contact_uri_params=frozenset({"ob"}),
        contact_params=frozenset({"+sip.instance"}),
        keep_contact_user=True,
    )
    request = parse_request(SEED_INVITE)
    request.prepend_via(EDGE_VIA)
    contact = hide_request(request, EDGE, keyring, options).contacts[0]
    uri = contact.uri
    assert uri.user == "1000"  # type: ignore[union-attr]
    assert uri.param("ob") == ""  # type: ignore[union-attr]
    assert contact.param("+sip.instance") == '"<urn:uuid:1>"'
    assert contact.param("expires") is None


def test_tcp_edge_writes_transport_into_contact_and_route(keyring: Keyring) -> None:
    edge = EdgeAddress("2001:db8::5", 5060, "tcp")
    request = parse_request(SEED_INVITE)
    request.prepend_via("SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bKedge6")
    hidden = hide_request(request, edge, keyring)
    assert hidden.contacts[0].uri.param("transport") == "tcp"  # type: ignore[union-attr]
    assert hidden.contacts[0].uri.host == "[2001:db8::5]"  # type: ignore[union-attr]
    route = hidden.record_routes[0].uri
    assert route.param("transport") == "tcp"  # type: ignore[union-attr]
    assert route.has_param("lr")  # type: ignore[union-attr]


def test_key_rotation_accepts_current_and_previous_only() -> None:
    old = f"1:{new_secret()}"
    new = f"2:{new_secret()}"
    invite = edge_forwards_invite(Keyring.parse(old))
    bye = gateway_in_dialog(invite, "BYE", 9)

    during = restore_request(bye.copy(), EDGE, Keyring.parse(f"{new},{old}"), OPTIONS)
    assert during.uri_text == "sip:1000@192.168.1.10:5060;ob"
    with pytest.raises(InvalidTokenError) as raised:
        restore_request(bye.copy(), EDGE, Keyring.parse(new), OPTIONS)
    assert raised.value.status == 403
    # what the rotated ring seals is sealed with the new key: it outlives the old one
    resealed = edge_forwards_invite(Keyring.parse(f"{new},{old}"))
    after = restore_request(
        gateway_in_dialog(resealed, "BYE", 9), EDGE, Keyring.parse(new), OPTIONS
    )
    assert after.uri_text == "sip:1000@192.168.1.10:5060;ob"


def test_tampered_token_is_refused_with_403(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    bye = gateway_in_dialog(invite, "BYE", 9)
    token = bye.uri.param("th")  # type: ignore[union-attr]
    assert token
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    bye.set_uri(bye.uri_text.replace(token, flipped))
    with pytest.raises(InvalidTokenError) as raised:
        restore_request(bye, EDGE, keyring, OPTIONS)
    assert raised.value.status == 403


def test_token_of_a_foreign_key_with_the_same_id_is_refused(keyring: Keyring) -> None:
    foreign = Keyring.parse(f"1:{new_secret()}")
    invite = edge_forwards_invite(foreign)
    with pytest.raises(InvalidTokenError) as raised:
        restore_response(gateway_answers(invite), EDGE, keyring, OPTIONS)
    assert raised.value.status == 403


def test_malformed_token_is_refused_with_400(keyring: Keyring) -> None:
    bye = parse_request(
        "BYE sip:203.0.113.5;th=not*base64 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
    )
    with pytest.raises(InvalidTokenError) as raised:
        restore_request(bye, EDGE, keyring)
    assert raised.value.status == 400


def test_token_of_one_kind_cannot_be_used_as_another(keyring: Keyring) -> None:
    invite = edge_forwards_invite(keyring)
    via_token = invite.top_via.param("th")
    bye = gateway_in_dialog(invite, "BYE", 9)
    bye.set_uri(f"sip:203.0.113.5:5060;th={via_token}")
    with pytest.raises(InvalidTokenError):
        restore_request(bye, EDGE, keyring, OPTIONS)


def test_a_th_parameter_on_someone_elses_uri_is_left_alone(keyring: Keyring) -> None:
    request = parse_request(
        "BYE sip:bob@198.51.100.20;th=whatever SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx\r\n"
        "Route: <sip:198.51.100.21;lr;th=other>\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
    )
    before = request.to_bytes()
    assert restore_request(request, EDGE, keyring).to_bytes() == before


def test_untouched_messages_are_returned_byte_identical(keyring: Keyring) -> None:
    response = gateway_answers(parse_request(SEED_INVITE))
    before = response.to_bytes()
    assert restore_response(response, EDGE, keyring).to_bytes() == before
