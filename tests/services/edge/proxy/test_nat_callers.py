"""A call from a phone behind NAT: the edge records the caller's flow, so the far end's in-dialog
requests (BYE, re-INVITE) reach the phone's public address, from this edge or a restarted one."""

from __future__ import annotations

from services.edge import metrics
from services.edge.location import BindingsQuery, Ha1Query, NonceCountQuery
from services.edge.proxy.actions import Action, Register, Send
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FLOW_PARAM, FLOW_SEPARATOR
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.topology.tokens import Keyring, TopologyKey
from shared.registrar.model import Location
from shared.sip.auth.digest import authorize, compute_ha1, parse_challenge
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri
from tests.services.edge.proxy.test_core import EDGE, GW1, Table, only_request, sent_to
from tests.services.edge.proxy.test_subscribers import (
    BOB,
    DOMAIN,
    PASSWORD,
    PHONE,
    Run,
    bobs_register,
    call,
    run,
)

__all__ = ["run"]  # the fixture, shared with test_subscribers

ALICE_PUBLIC = Destination("udp", "203.0.113.50", 40001)
"""Where Alice's router sends her packets from (the NAT's public side)."""
ALICE_LAN = "192.168.1.10"
NUMBER = f"sip:14075551234@{EDGE}"


def alices_invite(
    to: str, via: str, *, contact: str = ALICE_LAN, extra: str = "", call_id: str = "nat-1"
) -> bytes:
    return (
        f"INVITE {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via};rport;branch=z9hG4bK{len(extra)}\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=a1\r\n"
        f"To: <{to}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@{contact}:5060>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def alice_calls(
    run: Run, to: str, via: str, contact: str = ALICE_LAN, extra: str = ""
) -> list[Action]:
    """Alice's INVITE from behind her NAT (`extra` headers added), through the 407 challenge:
    the edge's actions."""
    run.directory.learn(
        Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, PASSWORD), run.now
    )
    first = run.send(alices_invite(to, via, extra=extra), ALICE_PUBLIC)
    challenge = parse_message(sent_to(first, ALICE_PUBLIC)[-1])
    assert isinstance(challenge, Response)
    credentials = authorize(
        parse_challenge(challenge.header("proxy-authenticate") or ""),
        username="alice",
        password=PASSWORD,
        method="INVITE",
        uri=to,
        cnonce="c0ffee",
        nc=1,
    )
    extra += f"Proxy-Authorization: {credentials}\r\n"
    actions = run.send(alices_invite(to, via, contact=contact, extra=extra), ALICE_PUBLIC)
    return list(run.resolve(actions, {NonceCountQuery(credentials.params["nonce"], 1): True}))


def in_dialog(method: str, forwarded: Request, cseq: int, target: str = ALICE_LAN) -> bytes:
    """A request of the far end in the dialog `forwarded` created (its route set reversed)."""
    routes = "".join(f"Route: {rr}\r\n" for rr in reversed(forwarded.headers("record-route")))
    return (
        f"{method} sip:alice@{target}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {GW1.host}:{GW1.port};branch=z9hG4bKgw{cseq}\r\n"
        f"From: {forwarded.header('to')};tag=gw\r\n"
        f"To: {forwarded.header('from')}\r\n"
        f"Call-ID: {forwarded.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{routes}Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


BOBS_NAT = Destination("udp", "198.51.100.60", 31000)
BOBS_CONTACT = "sip:bob@10.0.0.7:5060"


def bob_behind_nat(run: Run) -> Destination:
    """Bob registered from behind NAT (his Contact private): where his router sends from."""
    natted_bob = Location(
        aor=BOB,
        contact=BOBS_CONTACT,
        expires_at=10_000.0,
        q=None,
        received=f"sip:{BOBS_NAT.host}:{BOBS_NAT.port}",
        transport="udp",
        edge="edge-a",
    )
    run.directory.learn(BindingsQuery(BOB), (natted_bob,), 0.0)
    return BOBS_NAT


def flow_of(forwarded: Request) -> str | None:
    [record_route] = forwarded.record_routes
    assert isinstance(record_route.uri, SipUri)
    return record_route.uri.param(FLOW_PARAM)


def test_a_natted_callers_flow_is_recorded_and_signed_for_the_call(run: Run) -> None:
    forwarded = only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)
    flow = flow_of(forwarded)
    assert flow is not None
    assert run.proxy.subscribers is not None
    assert run.proxy.subscribers.flows.open(flow) == ALICE_PUBLIC


def test_a_caller_not_behind_nat_records_no_flow(run: Run) -> None:
    public = f"{ALICE_PUBLIC.host}:{ALICE_PUBLIC.port}"
    forwarded = only_request(alice_calls(run, NUMBER, public, contact=ALICE_PUBLIC.host), GW1)
    assert flow_of(forwarded) is None


def test_the_far_ends_bye_and_reinvite_reach_the_natted_caller(run: Run) -> None:
    forwarded = only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)
    bye = only_request(run.send(in_dialog("BYE", forwarded, 2), GW1), ALICE_PUBLIC)
    assert bye.uri_text == f"sip:alice@{ALICE_LAN}:5060"  # her Contact, at her public address
    reinvite = only_request(run.send(in_dialog("INVITE", forwarded, 3), GW1), ALICE_PUBLIC)
    assert reinvite.method == "INVITE"


def test_a_restarted_edge_with_the_same_keys_still_reaches_her(run: Run) -> None:
    key = Keyring(TopologyKey(0, b"k" * 32))
    assert run.proxy.subscribers is not None
    run.proxy.dialogs = DialogGate(RecordRouteSigner(key), run.proxy.subscribers.trusted)
    forwarded = only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)
    restarted = Proxy(
        Interfaces([Interface("udp", EDGE, 5060, 5060)]),
        NumberRouter(Table()),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        subscribers=run.proxy.subscribers,
        dialogs=DialogGate(RecordRouteSigner(key), lambda _source: False),
    )
    run.proxy = restarted
    assert only_request(run.send(in_dialog("BYE", forwarded, 2), GW1), ALICE_PUBLIC).method == "BYE"


def test_her_own_bye_goes_to_the_far_end_not_back_to_her(run: Run) -> None:
    forwarded = only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)
    routes = "".join(f"Route: {rr}\r\n" for rr in forwarded.headers("record-route"))
    bye = (
        f"BYE sip:gw@{GW1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ALICE_LAN}:5060;rport;branch=z9hG4bKab\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=a1\r\nTo: <{NUMBER}>;tag=gw\r\n"
        f"Call-ID: {forwarded.call_id}\r\nCSeq: 2 BYE\r\n{routes}"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert only_request(run.send(bye, ALICE_PUBLIC), GW1).method == "BYE"


def test_between_two_natted_phones_each_reaches_the_other(run: Run) -> None:
    """Bob registered from behind NAT too: the Record-Route names both flows."""
    bobs_nat = bob_behind_nat(run)
    forwarded = only_request(alice_calls(run, BOB, f"{ALICE_LAN}:5060"), bobs_nat)
    flows = flow_of(forwarded)
    assert flows is not None and flows.count(FLOW_SEPARATOR) == 1
    bye_from_bob = in_dialog("BYE", forwarded, 2)
    assert only_request(run.send(bye_from_bob, bobs_nat), ALICE_PUBLIC).method == "BYE"
    routes = "".join(f"Route: {rr}\r\n" for rr in forwarded.headers("record-route"))
    bye_from_alice = (
        f"BYE {BOBS_CONTACT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ALICE_LAN}:5060;rport;branch=z9hG4bKab\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=a1\r\nTo: <{BOB}>;tag=gw\r\n"
        f"Call-ID: {forwarded.call_id}\r\nCSeq: 3 BYE\r\n{routes}"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert only_request(run.send(bye_from_alice, ALICE_PUBLIC), bobs_nat).method == "BYE"


def test_a_trusted_peer_behind_nat_records_no_flow(run: Run) -> None:
    """A trusted carrier is reached at its configured address, not along a flow, even when
    its Via names an address it does not send from."""
    natted = call().replace(b"Via: SIP/2.0/UDP 198.51.100.99:5060", b"Via: SIP/2.0/UDP 10.9.9.9")
    forwarded = only_request(run.send(natted), PHONE)
    [record_route] = forwarded.record_routes
    assert isinstance(record_route.uri, SipUri)
    assert record_route.uri.param(FLOW_PARAM) is None


def test_natted_callers_and_registrations_are_counted(run: Run) -> None:
    callers, registrations = metrics.NAT_CALLERS.value, metrics.NAT_REGISTRATIONS.value
    only_request(alice_calls(run, NUMBER, f"{ALICE_LAN}:5060"), GW1)
    assert metrics.NAT_CALLERS.value == callers + 1
    bobs_nat = Destination("udp", "198.51.100.60", 31000)
    for source, counted in ((PHONE, 0), (bobs_nat, 1)):  # his Via names 192.0.2.21:5060
        register = bobs_register(str(counted))
        sent = [action.data for action in run.send(register, source) if isinstance(action, Send)]
        [challenge] = [parse_message(data) for data in sent]
        assert isinstance(challenge, Response) and challenge.status == 401
        credentials = authorize(
            parse_challenge(challenge.header("www-authenticate") or ""),
            username="bob",
            password=PASSWORD,
            method="REGISTER",
            uri=f"sip:{DOMAIN}",
            cnonce="abc",
        )
        header = f"Authorization: {credentials}\r\nContent-Length".encode()
        answered = register.replace(b"1 REGISTER", b"2 REGISTER").replace(b"Content-Length", header)
        answered = answered.replace(b"z9hG4bKr", b"z9hG4bKs")
        assert any(isinstance(action, Register) for action in run.send(answered, source))
        assert metrics.NAT_REGISTRATIONS.value == registrations + counted
