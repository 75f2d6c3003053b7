"""The Contact toward the far end of a phone behind NAT: the edge's own, naming the phone's flow,
so a far end that sends to the Contact (no Route) reaches the phone; signed, so nobody else can
use it to reach anyone."""

from __future__ import annotations

import base64

import pytest

from services.edge import metrics
from services.edge.proxy.actions import Action, Media, Send
from services.edge.proxy.contacts import rewrite_contacts, target_of
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DIALOG_PARAM, MEDIA_PARAM, DialogGate, RecordRouteSigner
from services.edge.proxy.flows import CONTACT_PARAM, FLOW_PARAM
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import MediaSettings
from services.edge.proxy.routes import NumberRouter
from services.edge.topology.tokens import Keyring, TopologyKey
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri
from tests.services.edge.proxy.test_core import EDGE, GW1, Table, only_request, sent_to
from tests.services.edge.proxy.test_nat_callers import (
    ALICE_LAN,
    ALICE_PUBLIC,
    BOBS_CONTACT,
    NUMBER,
    alice_calls,
    bob_behind_nat,
)
from tests.services.edge.proxy.test_relay import RELAYED, SDP
from tests.services.edge.proxy.test_subscribers import BOB, Run, run

__all__ = ["run"]  # the fixture, shared with test_subscribers

ATTACKER = Destination("udp", "198.51.100.66", 5060)
ALICES_CONTACT = f"sip:alice@{ALICE_LAN}:5060"


def contact_of(message: Request | Response) -> SipUri:
    [address] = message.contacts
    assert isinstance(address.uri, SipUri)
    return address.uri


def to_contact(
    method: str, forwarded: Request, cseq: int, *, uri: str | None = None, routes: bool = False
) -> bytes:
    """The far end's request in the dialog `forwarded` created, sent to its Contact (`uri`
    replaces it) with no Route, or (`routes`) along the route set too."""
    route = "".join(f"Route: {rr}\r\n" for rr in reversed(forwarded.headers("record-route")))
    return (
        f"{method} {uri or contact_of(forwarded)} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {GW1.host}:{GW1.port};branch=z9hG4bKct{cseq}\r\n"
        f"From: {forwarded.header('to')};tag=gw\r\n"
        f"To: {forwarded.header('from')}\r\n"
        f"Call-ID: {forwarded.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{route if routes else ''}Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def statuses_to(actions: list[Action], destination: Destination) -> list[int]:
    found = []
    for data in sent_to(actions, destination):
        message = parse_message(data)
        assert isinstance(message, Response)
        found.append(message.status)
    return found


def natted_call(run: Run) -> Request:
    return only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)


def test_a_natted_callers_contact_is_the_edges_naming_her_flow_and_her_own_contact(
    run: Run,
) -> None:
    before = metrics.NAT_CONTACTS.value
    contact = contact_of(natted_call(run))
    assert (contact.host, contact.port, contact.user) == (EDGE, 5060, "alice")
    assert run.proxy.subscribers is not None
    assert run.proxy.subscribers.flows.open(contact.param(FLOW_PARAM) or "") == ALICE_PUBLIC
    assert target_of(contact.param(CONTACT_PARAM) or "") == ALICES_CONTACT
    assert metrics.NAT_CONTACTS.value == before + 1


def test_a_caller_not_behind_nat_keeps_her_contact(run: Run) -> None:
    public = f"{ALICE_PUBLIC.host}:{ALICE_PUBLIC.port}"
    forwarded = only_request(alice_calls(run, NUMBER, public, contact=ALICE_PUBLIC.host), GW1)
    assert str(contact_of(forwarded)) == f"sip:alice@{ALICE_PUBLIC.host}:5060"


def test_a_far_end_sending_to_the_contact_without_route_reaches_her(run: Run) -> None:
    forwarded = natted_call(run)
    bye = only_request(run.send(to_contact("BYE", forwarded, 2), GW1), ALICE_PUBLIC)
    assert bye.uri_text == ALICES_CONTACT  # her own Contact back, at her public address
    reinvite = only_request(run.send(to_contact("INVITE", forwarded, 3), GW1), ALICE_PUBLIC)
    assert (reinvite.method, reinvite.uri_text) == ("INVITE", ALICES_CONTACT)


def test_a_far_end_following_the_route_set_to_the_contact_reaches_her_contact(run: Run) -> None:
    forwarded = natted_call(run)
    bye = to_contact("BYE", forwarded, 2, routes=True)
    assert only_request(run.send(bye, GW1), ALICE_PUBLIC).uri_text == ALICES_CONTACT


def test_the_ack_of_a_reinvite_to_the_contact_reaches_her(run: Run) -> None:
    forwarded = natted_call(run)
    ack = only_request(run.send(to_contact("ACK", forwarded, 3), GW1), ALICE_PUBLIC)
    assert (ack.method, ack.uri_text) == ("ACK", ALICES_CONTACT)


def test_a_restarted_edge_with_the_same_keys_takes_the_contact(run: Run) -> None:
    key = Keyring(TopologyKey(0, b"k" * 32))
    assert run.proxy.subscribers is not None
    run.proxy.dialogs = DialogGate(RecordRouteSigner(key), run.proxy.subscribers.trusted)
    forwarded = natted_call(run)
    run.proxy = Proxy(
        Interfaces([Interface("udp", EDGE, 5060, 5060)]),
        NumberRouter(Table()),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        subscribers=run.proxy.subscribers,
        dialogs=DialogGate(RecordRouteSigner(key), lambda _source: False),
    )
    assert only_request(run.send(to_contact("BYE", forwarded, 2), GW1), ALICE_PUBLIC)


def test_her_reinvite_leaves_with_a_contact_of_ours_too(run: Run) -> None:
    forwarded = natted_call(run)
    routes = "".join(f"Route: {rr}\r\n" for rr in forwarded.headers("record-route"))
    reinvite = (
        f"INVITE sip:gw@{GW1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ALICE_LAN}:5060;rport;branch=z9hG4bKre\r\n"
        f"From: {forwarded.header('from')}\r\nTo: <{NUMBER}>;tag=gw\r\n"
        f"Call-ID: {forwarded.call_id}\r\nCSeq: 2 INVITE\r\n{routes}"
        f"Contact: <{ALICES_CONTACT}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    contact = contact_of(only_request(run.send(reinvite, ALICE_PUBLIC), GW1))
    assert (contact.host, target_of(contact.param(CONTACT_PARAM) or "")) == (EDGE, ALICES_CONTACT)


def test_a_natted_callees_2xx_contact_names_his_flow(run: Run) -> None:
    """Bob registered from behind NAT: his 200's Contact toward the caller is ours, and the
    caller's BYE to it reaches him."""
    bobs_nat = bob_behind_nat(run)
    invite = only_request(alice_calls(run, BOB, f"{ALICE_LAN}:5060"), bobs_nat)
    instance = '+sip.instance="<urn:uuid:1>"'
    ok = make_response(
        invite, 200, to_tag="bob1", headers=(("Contact", f"<{BOBS_CONTACT}>;{instance}"),)
    )
    relayed = [a for a in run.send(ok.to_bytes(), bobs_nat) if isinstance(a, Send)]
    [answer] = [parse_message(a.data) for a in relayed if a.destination == ALICE_PUBLIC]
    assert isinstance(answer, Response) and answer.status == 200
    [address] = answer.contacts
    assert address.param("+sip.instance") == '"<urn:uuid:1>"'  # header parameters kept
    contact = contact_of(answer)
    assert (contact.host, target_of(contact.param(CONTACT_PARAM) or "")) == (EDGE, BOBS_CONTACT)
    bye = (
        f"BYE {contact} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ALICE_LAN}:5060;rport;branch=z9hG4bKab\r\n"
        f"From: {invite.header('from')}\r\nTo: {answer.header('to')}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 2 BYE\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert only_request(run.send(bye, ALICE_PUBLIC), bobs_nat).uri_text == BOBS_CONTACT


# ----- no open relay -----------------------------------------------------------------------


def test_a_contact_of_one_call_reaches_nobody_in_another(run: Run) -> None:
    forwarded = natted_call(run)
    stolen = to_contact("BYE", forwarded, 2).replace(forwarded.call_id.encode(), b"other-call")
    actions = run.send(stolen, ATTACKER)
    assert sent_to(actions, ALICE_PUBLIC) == []
    assert statuses_to(actions, ATTACKER) == [403]


def test_a_new_call_to_a_captured_contact_is_refused(run: Run) -> None:
    forwarded = natted_call(run)
    invite = (
        to_contact("INVITE", forwarded, 1)
        .replace(forwarded.call_id.encode(), b"fresh-call")
        .replace(b";tag=a1", b"")
    )
    actions = run.send(invite, ATTACKER)
    assert sent_to(actions, ALICE_PUBLIC) == []
    assert statuses_to(actions, ATTACKER) == [403]


def test_a_contact_with_another_flow_or_target_is_refused(run: Run) -> None:
    """A flow token the edge minted itself (valid alone) or another target in place of the
    signed ones: the signature over both breaks."""
    forwarded = natted_call(run)
    contact = contact_of(forwarded)
    assert run.proxy.subscribers is not None
    victim = Destination("udp", "192.0.2.99", 5060)
    other_flow = run.proxy.subscribers.flows.mint(victim)
    other_target = base64.urlsafe_b64encode(b"sip:x@192.0.2.99").rstrip(b"=").decode()
    for name, value in ((FLOW_PARAM, other_flow), (CONTACT_PARAM, other_target)):
        forged = str(contact).replace(contact.param(name) or "", value)
        actions = run.send(to_contact("BYE", forwarded, 2, uri=forged), ATTACKER)
        assert sent_to(actions, victim) == sent_to(actions, ALICE_PUBLIC) == []
        assert statuses_to(actions, ATTACKER) == [403]


def test_a_route_token_does_not_make_a_contact(run: Run) -> None:
    """The Record-Route's token (over the Call-ID and the flow) is not a Contact's (over the
    target too): a Contact built from the route set with another target is refused."""
    forwarded = natted_call(run)
    [record_route] = forwarded.record_routes
    assert isinstance(record_route.uri, SipUri)
    other_target = base64.urlsafe_b64encode(b"sip:x@192.0.2.99").rstrip(b"=").decode()
    uri = (
        f"sip:alice@{EDGE}:5060;{FLOW_PARAM}={record_route.uri.param(FLOW_PARAM)}"
        f";{CONTACT_PARAM}={other_target};cm-rr={record_route.uri.param('cm-rr')}"
    )
    actions = run.send(to_contact("BYE", forwarded, 2, uri=uri), ATTACKER)
    assert sent_to(actions, ALICE_PUBLIC) == []
    assert statuses_to(actions, ATTACKER) == [403]


def test_a_contact_behind_a_proxy_on_a_flow_is_left_to_that_proxy(run: Run) -> None:
    """Two Vias: the Contact is the user agent's behind the proxy that sent the request, not
    reachable down the proxy's flow without that proxy's own route (as the `nat` signs)."""
    inner = f"Via: SIP/2.0/UDP {ALICE_LAN}:5060;branch=z9hG4bKinner\r\n"
    forwarded = only_request(alice_calls(run, NUMBER, "192.168.1.1:5060", extra=inner), GW1)
    [record_route] = forwarded.record_routes  # the proxy's flow is recorded, as before
    assert isinstance(record_route.uri, SipUri) and record_route.uri.param(FLOW_PARAM)
    assert str(contact_of(forwarded)) == ALICES_CONTACT


def test_a_relayed_dialogs_contact_carries_the_signed_media_mark_and_a_bye_there_deletes(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice behind NAT calls with SDP, rtpengine takes the offer: the Contact the gateway gets
    carries `cm-media`, and its BYE sent to that Contact, with no Route, deletes the session."""
    run.proxy.media = MediaSettings("always", False, retry_after=7)
    send = run.send

    def with_sdp(data: bytes, source: Destination = GW1) -> list[Action]:
        if data.startswith(b"INVITE"):  # Alice's INVITEs (her helper sends none) carry SDP
            message = parse_message(data)
            message.set_body(SDP, "application/sdp")
            data = message.to_bytes()
        return send(data, source)

    monkeypatch.setattr(run, "send", with_sdp)
    [offer] = [a for a in alice_calls(run, NUMBER, f"{ALICE_LAN}:5060") if isinstance(a, Media)]
    forwarded = only_request(run.proxy.media_done(offer.ticket, RELAYED, run.now), GW1)
    assert forwarded.body == RELAYED
    assert contact_of(forwarded).has_param(MEDIA_PARAM)
    actions = run.send(to_contact("BYE", forwarded, 2), GW1)
    assert [(a.command, a.call_id) for a in actions if isinstance(a, Media)] == [
        ("delete", forwarded.call_id)
    ]
    assert only_request(actions, ALICE_PUBLIC).uri_text == ALICES_CONTACT
    removed = str(contact_of(forwarded)).replace(f";{MEDIA_PARAM}", "")
    assert statuses_to(run.send(to_contact("BYE", forwarded, 3, uri=removed), GW1), GW1) == [403]


def test_an_unrelayed_dialogs_contact_has_no_mark_and_one_added_is_refused(run: Run) -> None:
    run.proxy.media = MediaSettings("never", False, retry_after=7)
    forwarded = natted_call(run)  # `never`: nothing relayed
    plain = contact_of(forwarded)
    assert not plain.has_param(MEDIA_PARAM)
    unmarked = run.send(to_contact("BYE", forwarded, 2), GW1)
    assert not any(isinstance(a, Media) for a in unmarked)
    assert only_request(unmarked, ALICE_PUBLIC).uri_text == ALICES_CONTACT
    added = str(plain).replace(f";{DIALOG_PARAM}=", f";{MEDIA_PARAM};{DIALOG_PARAM}=")
    assert statuses_to(run.send(to_contact("BYE", forwarded, 3, uri=added), GW1), GW1) == [403]


def test_a_garbled_contact_target_is_refused_403() -> None:
    with pytest.raises(SipError) as refused:
        target_of("abcde")  # one character too many for base64
    assert (refused.value.status, refused.value.reason) == (403, "Forbidden (bad contact)")


def test_a_contact_whose_encoding_ends_in_x_is_kept_whole() -> None:
    """Only base64's padding is stripped: a URI of 27 bytes ending in `W` encodes to `…X`."""
    phones = "sip:alice@192.168.1.10;xy=W"
    request = parse_message(
        f"INVITE sip:gw@{GW1.host} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE_LAN};branch=z9hG4bKx\r\n"
        f"From: <sip:alice@{EDGE}>;tag=a\r\nTo: <sip:gw@{GW1.host}>\r\nCall-ID: x-1\r\n"
        f"CSeq: 1 INVITE\r\nContact: <{phones}>\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(request, Request)
    rewrite_contacts(request, Interface("udp", EDGE, 5060, 5060), "flow", DialogGate.closed())
    encoded = contact_of(request).param(CONTACT_PARAM) or ""
    assert encoded.endswith("X") and target_of(encoded) == phones


def test_a_changed_contact_along_a_valid_route_set_is_refused_403(run: Run) -> None:
    """The Record-Route's token passes the dialog check; the Contact's own signature fails."""
    forwarded = natted_call(run)
    plain = contact_of(forwarded)
    target = plain.param(CONTACT_PARAM) or ""
    other = base64.urlsafe_b64encode(b"sip:mallory@192.0.2.66").rstrip(b"=").decode()
    changed = str(plain).replace(target, other)
    bye = to_contact("BYE", forwarded, 2, uri=changed, routes=True)
    assert statuses_to(run.send(bye, GW1), GW1) == [403]
