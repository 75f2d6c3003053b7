"""The guard's scanner verdict, allow-list and clears, sans-IO.

A flagged source's scanner-looking requests are refused; the same
address's authenticated requests and in-dialog requests along our Route
are served, so a scanner behind a shared NAT does not silence its phones.
"""

from __future__ import annotations

from services.edge.policy import EdgePolicies
from services.edge.policy.guard import Guard
from services.edge.protection import FloodSettings, ProtectionSettings, ScannerSettings
from services.edge.proxy.actions import Action, Publish
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.acl import AddressAcl
from shared.contracts.protection import ScannerFlagged, SourceBlocked
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.policy.support import (
    INSIDE,
    Run,
    Table,
    invite,
    responses_to,
)

EDGE = "192.0.2.10"
NAT = Destination("udp", "203.0.113.9", 5060)
OTHER_PHONE_BEHIND_NAT = Destination("udp", "203.0.113.9", 40000)


def guard(trusted: Destination | None = None, **scanner: object) -> Guard:
    settings = ProtectionSettings(
        trusted="127.0.0.0/8",
        flood=FloodSettings(limit=3, period=1.0, block_time=60.0),
        scanner=ScannerSettings.model_validate(scanner),
    )
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    return Guard(settings, "edge-test", lambda source: source == trusted, interfaces)


def request(
    method: str = "INVITE",
    *,
    user: str = "100",
    agent: str = "Yealink SIP-T46U",
    extra: str = "",
    to_tag: str = "",
) -> Request:
    text = (
        f"{method} sip:{user}@{EDGE} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {NAT.host}:{NAT.port};branch=z9hG4bK{user}{method}\r\n"
        f"From: <sip:alice@example.com>;tag=f1\r\n"
        f"To: <sip:{user}@example.com>{to_tag}\r\n"
        f"Call-ID: {user}-{method}\r\nCSeq: 1 {method}\r\n"
        f"User-Agent: {agent}\r\n{extra}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    parsed = parse_message(text.encode())
    assert isinstance(parsed, Request)
    return parsed


def flagged(subject: Guard, now: float = 0.0) -> list[Action]:
    actions: list[Action] = []
    assert subject.screen(request("OPTIONS", agent="friendly-scanner"), NAT, now, actions)
    return actions


def test_flagging_is_published_once() -> None:
    subject = guard()
    [publish] = flagged(subject)
    assert isinstance(publish, Publish) and isinstance(publish.event, ScannerFlagged)
    assert (publish.event.source, publish.event.reason) == (NAT.host, "user-agent")
    later: list[Action] = []
    assert subject.screen(request("OPTIONS", agent="friendly-scanner"), NAT, 1.0, later)
    assert later == []


def test_a_flagged_source_still_gets_its_authenticated_requests_served() -> None:
    subject = guard()
    flagged(subject)
    actions: list[Action] = []
    credentials = 'Proxy-Authorization: Digest username="alice", realm="example.com"\r\n'
    invite = request(extra=credentials)
    assert subject.screen(invite, OTHER_PHONE_BEHIND_NAT, 1.0, actions) is False
    register = request("REGISTER", extra='Authorization: Digest username="alice"\r\n')
    assert subject.screen(register, OTHER_PHONE_BEHIND_NAT, 1.0, actions) is False
    # Unauthenticated, or with a scanner's User-Agent even with credentials: refused.
    assert subject.screen(request(user="101"), OTHER_PHONE_BEHIND_NAT, 1.0, actions) is True
    scanner = request(agent="friendly-scanner", extra=credentials)
    assert subject.screen(scanner, NAT, 1.0, actions) is True
    assert actions == []  # dropped silently


def test_a_flagged_source_keeps_its_calls_along_our_route() -> None:
    subject = guard()
    flagged(subject)
    actions: list[Action] = []
    ours = request("BYE", to_tag=";tag=t1", extra=f"Route: <sip:{EDGE}:5060;lr>\r\n")
    assert subject.screen(ours, NAT, 1.0, actions) is False
    elsewhere = request("BYE", to_tag=";tag=t1", extra="Route: <sip:198.51.100.1;lr>\r\n")
    assert subject.screen(elsewhere, NAT, 1.0, actions) is True
    no_route = request("BYE", to_tag=";tag=t1")
    assert subject.screen(no_route, NAT, 1.0, actions) is True


def test_a_sweeper_is_refused_while_a_phone_on_its_address_authenticates() -> None:
    subject = guard(sweep_targets=3)
    actions: list[Action] = []
    verdicts = [
        subject.screen(request("REGISTER", user=str(200 + i)), NAT, i, actions) for i in range(5)
    ]
    assert verdicts == [False, False, False, True, True]
    [publish] = actions
    assert isinstance(publish, Publish) and isinstance(publish.event, ScannerFlagged)
    assert publish.event.reason == "sweep"
    authenticated = request("REGISTER", user="alice", extra="Authorization: Digest x=1\r\n")
    assert subject.screen(authenticated, NAT, 6.0, actions) is False


def test_the_allow_list_lifts_and_prevents_flags_and_flood_blocks() -> None:
    subject = guard()
    flagged(subject)
    flood_actions: list[Action] = []
    for _ in range(5):
        subject.drop_flood(b"OPTIONS sip:x SIP/2.0\r\n", NAT, 0.5, flood_actions)
    assert subject.flood.is_blocked(NAT.host, 0.5)
    subject.set_allowlist(AddressAcl.parse("203.0.113.0/24"))
    assert not subject.flood.is_blocked(NAT.host, 0.6)
    assert not subject.scanner.is_flagged(NAT.host, 0.6)
    actions: list[Action] = []
    scanner = request("OPTIONS", agent="friendly-scanner")
    assert subject.screen(scanner, NAT, 1.0, actions) is False
    for _ in range(10):
        assert not subject.drop_flood(b"OPTIONS sip:x SIP/2.0\r\n", NAT, 1.0, actions)
    subject.set_allowlist(None)  # removed: it is counted again
    assert subject.screen(scanner, NAT, 2.0, actions) is True


def test_an_operators_clear_lifts_one_kind_for_one_address() -> None:
    subject = guard()
    flagged(subject)
    assert subject.clear("flood", NAT.host) is False
    assert subject.clear("scanner", NAT.host) is True
    assert not subject.scanner.is_flagged(NAT.host, 1.0)
    actions: list[Action] = []
    assert subject.screen(request(), NAT, 1.0, actions) is False


def test_a_source_counted_before_it_was_allow_listed_is_never_blocked() -> None:
    subject = guard()
    actions: list[Action] = []
    options = b"OPTIONS sip:x SIP/2.0\r\n"
    assert not subject.drop_flood(options, NAT, 0.0, actions)  # tracked from now on
    subject.set_allowlist(AddressAcl.parse("203.0.113.9/32"))
    assert not any(subject.drop_flood(options, NAT, 0.1, actions) for _ in range(10))
    assert actions == []


def test_a_trusted_peer_or_gateway_is_never_flood_blocked_a_stranger_is() -> None:
    """A trunk sends far above pike's limit: only untrusted sources are counted (the peers
    and gateways of the routing table, not only CALLMESH_TRUSTED_NETWORKS)."""
    subject = guard(trusted=NAT)
    actions: list[Action] = []
    options = b"OPTIONS sip:x SIP/2.0\r\n"
    assert not any(subject.drop_flood(options, NAT, 0.01 * n, actions) for n in range(50))
    assert actions == []  # no SourceBlocked for a trusted trunk
    source = Destination("udp", "198.51.100.7", 5060)
    stranger = [subject.drop_flood(options, source, 0.5, actions) for _ in range(5)]
    assert stranger == [False] * 3 + [True] * 2  # the positive control: counted, then blocked
    assert [type(a.event) for a in actions if isinstance(a, Publish)] == [SourceBlocked]


def new_call(n: int) -> bytes:
    return (
        invite()
        .replace(b"z9hG4bKin1", f"z9hG4bKin1-{n}".encode())
        .replace(b"Call-ID: ", f"Call-ID: {n}-".encode())
    )


def test_a_flood_through_the_proxy_is_published_once_then_dropped_unanswered() -> None:
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    table = Table()
    policies = EdgePolicies(table, guard(), None, None)
    run = Run(Proxy(interfaces, NumberRouter(table), ProxyTimers(), policies), table)
    answered = [run.send(new_call(n)) for n in range(3)]  # the limit: 3 a second
    assert all(responses_to(actions, INSIDE) for actions in answered)  # the positive control
    blocked = run.send(new_call(3))
    assert [type(a.event) for a in blocked if isinstance(a, Publish)] == [SourceBlocked]
    assert [a for a in blocked if not isinstance(a, Publish)] == []
    assert run.send(new_call(4)) == []
