"""Calls to and from subscribers through the sans-IO core: forking, 401/407, replays."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from services.edge.location import (
    BindingsQuery,
    Directory,
    DomainQuery,
    Ha1Query,
    NonceCountQuery,
    Query,
    SubscriberQuery,
)
from services.edge.location.directory import Answer
from services.edge.proxy.actions import Action, AuthFailed, Lookup, Register
from services.edge.proxy.branches import hash_in_branch, loop_hash
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FLOW_PARAM, FLOW_SEPARATOR, FlowTokens
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import MediaSettings
from services.edge.proxy.routes import Hop, NumberRouter
from services.edge.proxy.subscribers import Subscribers, binding_hop, binding_hops
from shared.dns.locate import NameSpec
from shared.registrar.model import Location
from shared.registrar.nonce_counts import NonceCounts
from shared.sip.address import parse_address
from shared.sip.auth.digest import authorize, compute_ha1, parse_challenge
from shared.sip.auth.nonces import NonceKeeper, NonceState
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri
from shared.store import Store
from tests.services.edge.proxy.test_core import (
    EDGE,
    GW1,
    UDP_IN,
    Table,
    answer,
    final_of,
    only_request,
    sent_to,
    statuses,
)
from tests.services.edge.proxy.test_relay import media, with_sdp

DOMAIN = "example.com"
BOB = f"sip:bob@{DOMAIN}"
PHONE = Destination("udp", "192.0.2.21", 5060)
TABLET = Destination("udp", "192.0.2.22", 5060)
DESK = Destination("udp", "192.0.2.23", 5060)
CARRIER = Destination("udp", "198.51.100.99", 5060)
PASSWORD = "s3cret"


def binding(where: Destination, q: float | None) -> Location:
    contact = f"sip:bob@{where.host}:{where.port}"
    return Location(
        aor=BOB,
        contact=contact,
        expires_at=10_000.0,
        q=q,
        received=contact,
        transport="udp",
        edge="edge-a",
    )


@dataclass
class Run:
    proxy: Proxy
    directory: Directory
    now: float = 100.0

    def send(self, data: bytes, source: Destination = CARRIER) -> list[Action]:
        return self.proxy.receive(data, source, UDP_IN, self.now)

    def resolve(self, actions: list[Action], answers: dict[Query, Answer]) -> list[Action]:
        """Answer the lookups in `actions` as Redis would, and resume (repeatedly)."""
        done: list[Action] = [a for a in actions if not isinstance(a, Lookup)]
        pending = [a for a in actions if isinstance(a, Lookup)]
        while pending:
            lookup = pending.pop(0)
            self.directory.learn(lookup.query, answers[lookup.query], self.now)
            for action in self.proxy.resume(lookup.server, self.now):
                if isinstance(action, Lookup):
                    pending.append(action)
                else:
                    done.append(action)
        return done


@pytest.fixture
def run() -> Run:
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    directory = Directory()
    secret = b"deployment-secret"
    subscribers = Subscribers(
        directory,
        FlowTokens(secret),
        NonceKeeper(secret, 300),
        lambda source: source == CARRIER,
    )
    proxy = Proxy(
        interfaces,
        NumberRouter(Table()),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        subscribers=subscribers,
        dialogs=DialogGate(RecordRouteSigner.ephemeral(), subscribers.trusted),
    )
    directory.learn(DomainQuery(DOMAIN), True, 0.0)
    directory.learn(DomainQuery(EDGE), False, 0.0)
    bindings = (binding(PHONE, None), binding(TABLET, 1.0), binding(DESK, 0.5))
    directory.learn(BindingsQuery(BOB), bindings, 0.0)
    return Run(proxy, directory)


def call(
    to: str = BOB, *, branch: str = "z9hG4bKc1", caller: str = "carrier", extra: str = ""
) -> bytes:
    return (
        f"INVITE {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.99:5060;branch={branch}\r\n"
        f"From: <sip:{caller}@{DOMAIN}>;tag=c1\r\n"
        f"To: <{to}>\r\n"
        "Call-ID: call-7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:carrier@198.51.100.99:5060>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def invites_to(actions: list[Action], *where: Destination) -> list[Request]:
    return [only_request(actions, destination) for destination in where]


def test_contacts_of_the_highest_q_ring_in_parallel(run: Run) -> None:
    actions = run.send(call())
    phone, tablet = invites_to(actions, PHONE, TABLET)
    assert (phone.method, tablet.method) == ("INVITE", "INVITE")
    assert phone.uri_text == f"sip:bob@{PHONE.host}:5060"
    assert phone.top_via.branch != tablet.top_via.branch
    assert sent_to(actions, DESK) == []  # q 0.5 waits for the q 1.0 group


def test_first_2xx_wins_and_the_other_branches_are_cancelled(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(tablet, 180), TABLET)
    actions = run.send(answer(phone, 200), PHONE)
    assert statuses(actions, CARRIER) == [200]
    cancel = only_request(actions, TABLET)
    assert cancel.method == "CANCEL"
    assert cancel.top_via.branch == tablet.top_via.branch
    assert sent_to(actions, DESK) == []


def test_a_branch_not_yet_ringing_is_cancelled_on_its_first_provisional(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    actions = run.send(answer(phone, 200), PHONE)
    assert statuses(actions, CARRIER) == [200]
    assert sent_to(actions, TABLET) == []  # no CANCEL before a provisional (§9.1)
    actions = run.send(answer(tablet, 180), TABLET)
    assert only_request(actions, TABLET).method == "CANCEL"
    assert statuses(actions, CARRIER) == []  # the late 180 is not relayed


def test_the_next_q_group_is_tried_when_the_top_one_failed(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    assert sent_to(run.send(answer(phone, 486), PHONE), DESK) == []  # the tablet still rings
    actions = run.send(answer(tablet, 480), TABLET)
    [desk] = invites_to(actions, DESK)
    assert desk.method == "INVITE"
    assert statuses(actions, CARRIER) == []


def test_when_every_contact_fails_the_best_response_goes_upstream(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(phone, 503), PHONE)
    [desk] = invites_to(run.send(answer(tablet, 486), TABLET), DESK)
    actions = run.send(answer(desk, 480), DESK)
    assert statuses(actions, CARRIER) == [486]  # §16.7 step 6: lowest class, first of it


@pytest.mark.parametrize("status", [600, 603])
def test_a_6xx_ends_the_forking_once_the_cancelled_branches_have_ended(
    run: Run, status: int
) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(tablet, 180), TABLET)
    actions = run.send(answer(phone, status), PHONE)
    assert only_request(actions, TABLET).method == "CANCEL"
    assert sent_to(actions, DESK) == []
    assert statuses(actions, CARRIER) == []  # §16.7 step 5: not forwarded at once
    assert statuses(run.send(answer(tablet, 487), TABLET), CARRIER) == [status]


def test_a_2xx_after_a_6xx_still_wins(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(phone, 603), PHONE)
    actions = run.send(answer(tablet, 200), TABLET)
    assert statuses(actions, CARRIER) == [200]
    assert statuses(run.send(answer(tablet, 200), TABLET), CARRIER) == [200]  # 2xx relayed


def test_a_retransmitted_invite_is_absorbed(run: Run) -> None:
    first = run.send(call())
    assert len(invites_to(first, PHONE, TABLET)) == 2
    again = run.send(call())
    assert sent_to(again, PHONE) == sent_to(again, TABLET) == []
    assert statuses(again, CARRIER) == [100]  # the server transaction repeats its answer


def test_a_retransmission_while_the_bindings_are_read_is_absorbed(run: Run) -> None:
    run.directory.forget_all()
    first = run.send(call())
    lookups = [a for a in first if isinstance(a, Lookup)]
    assert [lookup.query for lookup in lookups] == [DomainQuery(DOMAIN)]
    again = run.send(call())
    assert [a for a in again if isinstance(a, Lookup)] == []
    assert statuses(again, CARRIER) == [100]


def bobs_register(n: str) -> bytes:
    """Bob's first REGISTER (no credentials), branch and Call-ID numbered `n`."""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKr{n}\r\n"
        f"From: <{BOB}>;tag=r1\r\nTo: <{BOB}>\r\nCall-ID: reg-{n}\r\nCSeq: 1 REGISTER\r\n"
        "Contact: <sip:bob@192.0.2.21:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_a_register_without_credentials_is_challenged_by_the_edge_itself(run: Run) -> None:
    register = bobs_register("1")
    actions = run.send(register, PHONE)
    assert not any(isinstance(a, Register) for a in actions)
    [data] = sent_to(actions, PHONE)
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 401
    challenge = parse_challenge(response.header("www-authenticate") or "")
    assert (challenge.realm, challenge.algorithm) == (DOMAIN, "MD5")
    credentials = authorize(
        challenge,
        username="bob",
        password=PASSWORD,
        method="REGISTER",
        uri=f"sip:{DOMAIN}",
        cnonce="abc",
    )
    answered = register.replace(b"z9hG4bKr1", b"z9hG4bKr2").replace(b"1 REGISTER", b"2 REGISTER")
    answered = answered.replace(
        b"Content-Length", f"Authorization: {credentials}\r\nContent-Length".encode()
    )
    actions = run.send(answered, PHONE)
    assert [type(a) for a in actions] == [Register]  # the registrar verifies it
    [passed] = [a for a in actions if isinstance(a, Register)]
    # Where other edges reach the phone through us: our address, without ;lr.
    assert (passed.source, passed.edge_address) == (PHONE, f"sip:{EDGE}:5060")
    assert passed.data.startswith(b"REGISTER sip:example.com SIP/2.0\r\n")


def test_the_edges_register_challenge_is_minted_on_the_wall_clock(run: Run) -> None:
    """The registrar checks the nonce against wall time: one minted on the core's own
    clock would be refused as stale."""
    subscribers = run.proxy.subscribers
    assert subscribers is not None
    subscribers.wall_offset = 1_700_000_000.0
    [data] = sent_to(run.send(bobs_register("1"), PHONE), PHONE)
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 401
    challenge = parse_challenge(response.header("www-authenticate") or "")
    wall = run.now + subscribers.wall_offset
    assert subscribers.nonces.check(challenge.nonce, DOMAIN, wall) is NonceState.FRESH


def authorized_call(run: Run, challenge_response: bytes, *, branch: str, nc: int = 1) -> bytes:
    response = parse_message(challenge_response)
    assert isinstance(response, Response)
    challenge = parse_challenge(response.header("proxy-authenticate") or "")
    uri = f"sip:14075551234@{EDGE}"
    credentials = authorize(
        challenge,
        username="alice",
        password=PASSWORD,
        method="INVITE",
        uri=uri,
        cnonce="c0ffee",
        nc=nc,
    )
    return call(uri, branch=branch, caller="alice", extra=f"Proxy-Authorization: {credentials}\r\n")


def test_a_replayed_proxy_authorization_is_challenged_again(run: Run) -> None:
    alice = Destination("udp", "192.0.2.50", 5060)
    run.directory.learn(
        Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, PASSWORD), run.now
    )
    uri = f"sip:14075551234@{EDGE}"
    actions = run.send(call(uri, caller="alice"), alice)
    assert statuses(actions, alice) == [100, 407]
    challenge = sent_to(actions, alice)[-1]
    first = authorized_call(run, challenge, branch="z9hG4bKa2")
    actions = run.send(first, alice)
    claim = NonceCountQuery(_nonce_of(first), 1)
    assert [a.query for a in actions if isinstance(a, Lookup)] == [claim]
    actions = run.resolve(actions, {claim: True})  # Redis: first use of this count
    assert only_request(actions, GW1).method == "INVITE"
    assert "Proxy-Authorization" not in only_request(actions, GW1).to_bytes().decode()
    # The same credentials again, in a new transaction: Redis refuses the count.
    replay = first.replace(b"z9hG4bKa2", b"z9hG4bKa3").replace(b"call-7", b"call-8")
    actions = run.resolve(run.send(replay, alice), {claim: False})
    assert sent_to(actions, GW1) == []
    assert statuses(actions, alice) == [100, 407]


def _nonce_of(request: bytes) -> str:
    found = re.search(rb'nonce="([^"]+)"', request)
    assert found is not None
    return found.group(1).decode()


# ----- failed authentications: counted, then refused while blocked -----------------------


def alice_with_password(run: Run, password: str) -> tuple[Destination, bytes]:
    """Alice's INVITE to a number answering a fresh 407, with `password`."""
    alice = Destination("udp", "192.0.2.50", 5060)
    run.directory.learn(
        Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, PASSWORD), run.now
    )
    actions = run.send(call(f"sip:14075551234@{EDGE}", caller="alice"), alice)
    assert statuses(actions, alice) == [100, 407]
    response = parse_message(sent_to(actions, alice)[-1])
    assert isinstance(response, Response)
    challenge = parse_challenge(response.header("proxy-authenticate") or "")
    uri = f"sip:14075551234@{EDGE}"
    credentials = authorize(
        challenge,
        username="alice",
        password=password,
        method="INVITE",
        uri=uri,
        cnonce="c0ffee",
    )
    extra = f"Proxy-Authorization: {credentials}\r\n"
    return alice, call(uri, branch="z9hG4bKa9", caller="alice", extra=extra)


def test_a_wrong_password_is_counted_before_its_403(run: Run) -> None:
    alice, guess = alice_with_password(run, "guess")
    actions = run.send(guess, alice)
    [failed] = [a for a in actions if isinstance(a, AuthFailed)]
    assert (failed.user, failed.realm, failed.method, failed.source) == (
        "alice",
        DOMAIN,
        "INVITE",
        alice,
    )
    assert statuses(actions, alice) == [100]  # the 403 waits for the count (and its delay)
    assert statuses(run.proxy.refuse(failed.server, run.now), alice) == [403]
    assert run.proxy.refuse(failed.server, run.now) == []  # answered once


def test_a_blocked_account_is_refused_even_with_the_right_password(run: Run) -> None:
    alice, right = alice_with_password(run, PASSWORD)
    subscribers = run.proxy.subscribers
    assert subscribers is not None
    wall = run.now + subscribers.wall_offset
    subscribers.blocks.add("account", f"alice@{DOMAIN}", wall + 600)
    actions = run.send(right, alice)
    assert statuses(actions, alice) == [100, 403]
    assert sent_to(actions, GW1) == []
    # Without credentials too: no challenge while blocked, the same 403 for any user.
    again = run.send(call(f"sip:14075551234@{EDGE}", branch="z9hG4bKb1", caller="alice"), alice)
    assert statuses(again, alice) == [100, 403]
    subscribers.blocks.remove("account", f"alice@{DOMAIN}")
    subscribers.blocks.add("source", alice.host, wall + 5)
    nobody = call(f"sip:14075551234@{EDGE}", branch="z9hG4bKb2", caller="nobody")
    assert statuses(run.send(nobody, alice), alice) == [100, 403]
    # The block over, she is served again.
    run.now += 6
    actions = run.send(call(f"sip:14075551234@{EDGE}", branch="z9hG4bKb3", caller="alice"), alice)
    assert statuses(actions, alice) == [100, 407]


def test_a_blocked_account_cannot_register(run: Run) -> None:
    subscribers = run.proxy.subscribers
    assert subscribers is not None
    subscribers.blocks.add("account", f"bob@{DOMAIN}", run.now + subscribers.wall_offset + 60)
    actions = run.send(bobs_register("7"), PHONE)
    assert not any(isinstance(a, Register) for a in actions)
    assert statuses(actions, PHONE) == [403]


def refused_while_blocked() -> float:
    value = REGISTRY.get_sample_value("callmesh_edge_auth_failures_total", {"reason": "blocked"})
    return value or 0.0


def test_the_blocked_refusal_is_one_fail2ban_line(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    subscribers = run.proxy.subscribers
    assert subscribers is not None
    subscribers.blocks.add("source", "192.0.2.50", run.now + subscribers.wall_offset + 60)
    alice = Destination("udp", "192.0.2.50", 5060)
    before = refused_while_blocked()
    with caplog.at_level(logging.WARNING, "callmesh.auth"):
        run.send(call(f"sip:14075551234@{EDGE}", caller="alice"), alice)
    assert refused_while_blocked() == before + 1
    assert [r.getMessage() for r in caplog.records if r.name == "callmesh.auth"] == [
        f"auth failed: source=192.0.2.50 user=alice realm={DOMAIN} method=INVITE reason=blocked"
    ]


def test_a_call_to_a_phone_behind_another_edge_carries_a_route_signed_for_the_call(
    run: Run,
) -> None:
    """That edge relays to its flow only along a Route signed for the call (no open relay)."""
    other_edge = Destination("udp", "192.0.2.99", 5060)
    natted = Location(
        aor=BOB,
        contact="sip:bob@10.0.0.7:5060",
        expires_at=10_000.0,
        q=None,
        received="sip:203.0.113.40:40001",
        transport="udp",
        edge="edge-b",
        edge_address=f"sip:{other_edge.host}:{other_edge.port}",
    )
    run.directory.learn(BindingsQuery(BOB), (natted,), 0.0)
    actions = run.send(call())
    assert b"\r\nRoute: <sip:192.0.2.99:5060;lr;" in sent_to(actions, other_edge)[0]
    forwarded = only_request(actions, other_edge)
    [route] = forwarded.routes
    assert isinstance(route.uri, SipUri)
    flow, token = route.uri.param("cm-flow"), route.uri.param("cm-rr")
    assert flow and token
    assert run.proxy.dialogs.signer.verify(token, forwarded.call_id, flow)
    assert not run.proxy.dialogs.signer.verify(token, "another-call", flow)


def test_a_call_handed_over_along_a_flow_has_its_media_decided_here(run: Run) -> None:
    """Another edge's Route, signed for the call, names a flow of ours: this edge's policy
    (here `always`) decides its media as for any new call."""
    run.proxy.media = MediaSettings("always", False, retry_after=7)
    assert run.proxy.subscribers is not None
    token = run.proxy.subscribers.flows.mint(Destination("udp", "203.0.113.40", 40001))
    route = f"<sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('call-7', token)}>"
    actions = run.send(with_sdp(call(extra=f"Route: {route}\r\n")))
    assert [(action.command, action.call_id) for action in media(actions)] == [("offer", "call-7")]


def test_a_call_to_a_phone_behind_nat_here_is_record_routed_with_its_flow(run: Run) -> None:
    """The callee's requests in the dialog come back along our Record-Route to the caller;
    the caller's reach the phone only through its flow, named by the token in it."""
    natted = Location(
        aor=BOB,
        contact="sip:bob@10.0.0.7:5060",
        expires_at=10_000.0,
        q=None,
        received="sip:203.0.113.40:40001",
        transport="udp",
        edge="edge-a",
    )
    run.directory.learn(BindingsQuery(BOB), (natted,), 0.0)
    flow = Destination("udp", "203.0.113.40", 40001)
    forwarded = only_request(run.send(call()), flow)
    [record_route] = forwarded.headers("record-route")
    uri = parse_address(record_route).uri
    assert isinstance(uri, SipUri)
    assert run.proxy.subscribers is not None
    assert run.proxy.subscribers.flows.open(uri.param(FLOW_PARAM) or "") == flow


ALICE = Destination("udp", "192.0.2.50", 5060)
"""An untrusted source: its dialog-creating requests must prove a subscriber's password."""


def challenged(run: Run, method: str) -> tuple[bytes, bytes]:
    """Alice's out-of-dialog `method` to a number, and the edge's 407 to it."""
    run.directory.learn(
        Ha1Query("alice", DOMAIN, "MD5"), compute_ha1("alice", DOMAIN, PASSWORD), run.now
    )
    request = call(f"sip:14075551234@{EDGE}", caller="alice").replace(b"INVITE", method.encode())
    actions = run.send(request, ALICE)
    assert statuses(actions, ALICE)[-1] == 407
    challenge = sent_to(actions, ALICE)[-1]
    assert challenge.startswith(b"SIP/2.0 407 Proxy Authentication Required\r\n")
    assert b"\r\nProxy-Authenticate: Digest " in challenge
    return request, challenge


def with_credentials(
    request: bytes, challenge: bytes, method: str, password: str, *, nc: int = 1, branch: str = "c2"
) -> bytes:
    response = parse_message(challenge)
    assert isinstance(response, Response)
    credentials = authorize(
        parse_challenge(response.header("proxy-authenticate") or ""),
        username="alice",
        password=password,
        method=method,
        uri=f"sip:14075551234@{EDGE}",
        cnonce="c0ffee",
        nc=nc,
    )
    request = request.replace(b"z9hG4bKc1", f"z9hG4bK{branch}".encode()).replace(
        b"CSeq: 1", b"CSeq: 2"
    )
    header = f"Proxy-Authorization: {credentials}\r\nContent-Length".encode()
    return request.replace(b"Content-Length", header)


CHALLENGED_METHODS = (
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PUBLISH",
    "REFER",
    "SUBSCRIBE",
    "UPDATE",
)  # fmt: skip  (two short rows)
"""Every out-of-dialog method a stranger could send onward (not ACK, CANCEL, REGISTER)."""


def refused(run: Run, actions: list[Action]) -> list[Action]:
    """A wrong password is counted first (`AuthFailed`), then answered: both sets of actions."""
    [failed] = [action for action in actions if isinstance(action, AuthFailed)]
    return actions + run.proxy.refuse(failed.server, run.now)


@pytest.mark.parametrize("method", sorted(CHALLENGED_METHODS))
def test_a_wrong_password_is_forbidden_and_goes_nowhere(run: Run, method: str) -> None:
    request, challenge = challenged(run, method)
    guess = with_credentials(request, challenge, method, "wrong-" + PASSWORD)
    actions = refused(run, run.send(guess, ALICE))
    assert [a for a in actions if isinstance(a, Lookup)] == []  # no nonce-count claimed
    assert statuses(actions, ALICE)[-1] == 403
    assert sent_to(actions, GW1) == []


@pytest.mark.parametrize("method", sorted(CHALLENGED_METHODS))
def test_the_right_password_goes_through(run: Run, method: str) -> None:
    """The positive control of the test above: same request, same challenge, right password."""
    request, challenge = challenged(run, method)
    actions = run.send(with_credentials(request, challenge, method, PASSWORD), ALICE)
    [claim] = [a.query for a in actions if isinstance(a, Lookup)]
    forwarded = only_request(run.resolve(actions, {claim: True}), GW1)
    assert forwarded.method == method


@pytest.mark.parametrize("method", sorted(CHALLENGED_METHODS))
def test_credentials_for_another_method_are_forbidden(run: Run, method: str) -> None:
    """The digest covers the method: an INVITE's answer does not open a REFER, and back."""
    request, challenge = challenged(run, method)
    other = "REFER" if method == "INVITE" else "INVITE"
    actions = refused(run, run.send(with_credentials(request, challenge, other, PASSWORD), ALICE))
    assert statuses(actions, ALICE)[-1] == 403
    assert sent_to(actions, GW1) == []


@pytest.mark.integration
async def test_a_replayed_nonce_count_is_refused_by_the_real_claim_script(
    run: Run, redis_store: Store
) -> None:
    """The edge's claims go through the registrar's Lua script on the real Redis."""
    counts = NonceCounts(redis_store, 300)

    async def resolve(actions: list[Action]) -> list[Action]:
        done: list[Action] = [a for a in actions if not isinstance(a, Lookup)]
        for lookup in (a for a in actions if isinstance(a, Lookup)):
            query = lookup.query
            assert isinstance(query, NonceCountQuery)
            run.directory.learn(query, await counts.claim(query.nonce, query.count), run.now)
            done += run.proxy.resume(lookup.server, run.now)
        return done

    request, challenge = challenged(run, "INVITE")
    first = with_credentials(request, challenge, "INVITE", PASSWORD)
    assert only_request(await resolve(run.send(first, ALICE)), GW1).method == "INVITE"
    replay = first.replace(b"z9hG4bKc2", b"z9hG4bKc3").replace(b"call-7", b"call-8")
    actions = await resolve(run.send(replay, ALICE))
    assert sent_to(actions, GW1) == []
    assert statuses(actions, ALICE) == [100, 407]
    # The next count of the same nonce is a first use: the script refuses replays only.
    again = with_credentials(request, challenge, "INVITE", PASSWORD, nc=2, branch="c4")
    again = again.replace(b"call-7", b"call-9")
    assert only_request(await resolve(run.send(again, ALICE)), GW1).method == "INVITE"


def test_a_register_for_a_foreign_domain_is_404_and_not_passed_on(run: Run) -> None:
    run.directory.learn(DomainQuery("elsewhere.net"), False, 0.0)
    register = (
        b"REGISTER sip:elsewhere.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKr9\r\n"
        b"From: <sip:bob@elsewhere.net>;tag=r1\r\nTo: <sip:bob@elsewhere.net>\r\n"
        b"Call-ID: reg-9\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@192.0.2.21:5060>\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    actions = run.send(register, PHONE)
    assert not any(isinstance(a, Register) for a in actions)
    [data] = sent_to(actions, PHONE)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (404, "Not Found (not a domain of ours)")


def final_to_alice(actions: list[Action]) -> Response:
    [data] = [d for d in sent_to(actions, ALICE) if not d.startswith(b"SIP/2.0 100")]
    response = parse_message(data)
    assert isinstance(response, Response)
    return response


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'username="alice"', b'username="bob"'),  # another subscriber's name
        (f'uri="sip:14075551234@{EDGE}"'.encode(), b'uri="sip:1@example.com"'),  # another URI
    ],
)
def test_credentials_that_are_not_the_callers_are_forbidden(
    run: Run, old: bytes, new: bytes
) -> None:
    request, challenge = challenged(run, "INVITE")
    forged = with_credentials(request, challenge, "INVITE", PASSWORD)
    assert old in forged
    final = final_to_alice(run.send(forged.replace(old, new), ALICE))
    assert (final.status, final.reason) == (403, "Forbidden (credentials are not the caller's)")
    control = run.send(forged.replace(b"z9hG4bKc2", b"z9hG4bKc5"), ALICE)  # unforged: accepted,
    assert [type(a.query) for a in control if isinstance(a, Lookup)] == [NonceCountQuery]


def test_a_caller_of_a_foreign_domain_is_forbidden_without_a_challenge(run: Run) -> None:
    run.directory.learn(DomainQuery("elsewhere.net"), False, 0.0)
    request = call(f"sip:14075551234@{EDGE}", caller="alice").replace(
        b"alice@example.com", b"alice@elsewhere.net"
    )
    final = final_to_alice(run.send(request, ALICE))
    assert (final.status, final.reason) == (403, "Forbidden (caller is not a subscriber)")
    assert final.header("proxy-authenticate") is None


def test_a_stale_nonce_is_challenged_again_with_stale_true(run: Run) -> None:
    request, challenge = challenged(run, "INVITE")
    answer_ = with_credentials(request, challenge, "INVITE", PASSWORD)
    run.now += 301  # the nonce keeper's TTL is 300 s
    ha1 = Ha1Query("alice", DOMAIN, "MD5")
    answers: dict[Query, Answer] = {ha1: compute_ha1("alice", DOMAIN, PASSWORD)}
    answers[DomainQuery(DOMAIN)] = True  # what the edge knew has aged out too: asked again
    final = final_to_alice(run.resolve(run.send(answer_, ALICE), answers))
    assert final.status == 407
    assert "stale=true" in (final.header("proxy-authenticate") or "")


# ----- where a binding is reached (binding_hop) ------------------------------------------

FLOWS = FlowTokens(b"deployment-secret")
OURS = Interfaces([Interface("udp", EDGE, 5060, 5060), Interface("tcp", EDGE, 5060, 5060)])


def located(**fields: object) -> Location:
    values: dict[str, object] = {
        "aor": BOB,
        "contact": "sip:bob@192.0.2.21:5060",
        "expires_at": 10_000.0,
        "q": 0.7,
        "received": "sip:192.0.2.21:5060",
        "transport": "udp",
        "edge": "edge-a",
    }
    return Location.model_validate(values | fields)


def test_a_binding_that_registered_from_its_contact_is_reached_there() -> None:
    assert binding_hop(located(), FLOWS, OURS) == Hop(
        "sip:bob@192.0.2.21:5060", Destination("udp", "192.0.2.21", 5060), q=0.7
    )


def test_a_path_binding_is_reached_through_its_path() -> None:
    path = ("<sip:203.0.113.7:5070;lr>", "<sip:203.0.113.8;lr>")
    hop = binding_hop(located(path=path), FLOWS, OURS)
    assert (hop.destination, hop.routes, hop.q) == (
        Destination("udp", "203.0.113.7", 5070),
        path,
        0.7,
    )


@pytest.mark.parametrize(
    ("received", "transport", "connection", "flow"),
    [
        ("sip:198.51.100.5:40000", "udp", None, Destination("udp", "198.51.100.5", 40000)),
        (
            "sip:192.0.2.21:5060;transport=tcp",
            "tcp",
            9,
            Destination("tcp", "192.0.2.21", 5060, connection_id=9),
        ),
    ],
)
def test_a_natted_or_tcp_binding_on_this_edge_is_reached_over_its_flow(
    received: str, transport: str, connection: int | None, flow: Destination
) -> None:
    binding = located(
        received=received,
        transport=transport,
        connection_id=connection,
        edge_address=f"sip:{EDGE}:5060",
    )
    hop = binding_hop(binding, FLOWS, OURS)
    assert (hop.uri, hop.destination, hop.q, hop.routes) == (binding.contact, flow, 0.7, ())
    assert hop.flow_token is not None and FLOWS.open(hop.flow_token) == flow


@pytest.mark.parametrize("edge_address", ["sip:192.0.2.99:5060", "sip:192.0.2.99;transport=tcp"])
def test_a_natted_binding_of_another_edge_is_reached_through_that_edge(edge_address: str) -> None:
    binding = located(received="sip:198.51.100.5:40000", edge_address=edge_address)
    hop = binding_hop(binding, FLOWS, OURS)
    assert hop.destination.host == "192.0.2.99" and hop.q == 0.7 and hop.flow_token is None
    assert hop.routes == (f"<{edge_address};lr>",)  # the flow and its signature: per call
    assert hop.remote_flow is not None
    assert FLOWS.open(hop.remote_flow) == Destination("udp", "198.51.100.5", 40000)


@pytest.mark.parametrize(
    "edge_address",
    [f"sip:{EDGE}:5070", f"sip:{EDGE};transport=tls"],  # our host, not our port (TLS: 5061)
)
def test_another_port_of_this_host_is_another_edge(edge_address: str) -> None:
    hop = binding_hop(
        located(received="sip:198.51.100.5:40000", edge_address=edge_address), FLOWS, OURS
    )
    assert (hop.routes, hop.flow_token) == ((f"<{edge_address};lr>",), None)


def test_another_edge_given_by_name_is_resolved_when_sent() -> None:
    edge_address = "sip:edge-b.example.net:5080;transport=tcp"
    hop = binding_hop(
        located(received="sip:198.51.100.5:40000", edge_address=edge_address), FLOWS, OURS
    )
    assert hop.name == NameSpec("edge-b.example.net", 5080, "tcp", False)


def test_a_natted_binding_without_an_edge_address_is_reached_from_here() -> None:
    hop = binding_hop(located(received="sip:198.51.100.5:40000"), FLOWS, OURS)
    assert hop.destination == Destination("udp", "198.51.100.5", 40000)
    assert hop.routes == () and hop.flow_token is not None


# ----- the registrar's answer (Proxy.registered) -----------------------------------------


def passed_register(run: Run) -> Register:
    """A REGISTER with credentials, passed to the registrar (as a phone's second one is)."""
    register = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKr5\r\n"
        f"From: <{BOB}>;tag=r1\r\nTo: <{BOB}>\r\nCall-ID: reg-5\r\nCSeq: 2 REGISTER\r\n"
        f'Authorization: Digest username="bob", realm="{DOMAIN}", nonce="x", uri="sip:{DOMAIN}",'
        ' response="00"\r\n'
        "Contact: <sip:bob@192.0.2.21:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    [passed] = run.send(register, PHONE)
    assert isinstance(passed, Register)
    return passed


def test_the_registrars_answer_goes_back_to_the_phone(run: Run) -> None:
    passed = passed_register(run)
    request = parse_message(passed.data)
    assert isinstance(request, Request)
    ok = make_response(request, 200, headers=(("Contact", "<sip:bob@192.0.2.21:5060>"),))
    [data] = sent_to(run.proxy.registered(passed.server, ok.to_bytes(), run.now), PHONE)
    assert parse_message(data).status == 200  # type: ignore[union-attr]


@pytest.mark.parametrize("reply", [None, b"garbage", b"OPTIONS sip:x SIP/2.0\r\n\r\n"])
def test_no_usable_answer_from_the_registrar_is_503_retry_after(
    run: Run, reply: bytes | None
) -> None:
    passed = passed_register(run)
    [data] = sent_to(run.proxy.registered(passed.server, reply, run.now), PHONE)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (503, "Service Unavailable (registrar)")
    assert response.header("retry-after") == "5"


# ----- more of what the second mutation run found -----------------------------------------


def test_a_wrong_password_is_plainly_forbidden(run: Run) -> None:
    request, challenge = challenged(run, "INVITE")
    guess = with_credentials(request, challenge, "INVITE", "x")
    final = final_to_alice(refused(run, run.send(guess, ALICE)))
    assert (final.status, final.reason) == (403, "Forbidden")


def test_a_caller_without_a_user_part_is_forbidden(run: Run) -> None:
    request = call(f"sip:14075551234@{EDGE}", caller="alice").replace(
        b"From: <sip:alice@example.com>", b"From: <sip:example.com>"
    )
    final = final_to_alice(run.send(request, ALICE))
    assert (final.status, final.reason) == (403, "Forbidden (caller is not a subscriber)")


def test_nonces_carry_wall_time_not_the_cores_clock(run: Run) -> None:
    """The core's clock is monotonic; nonces are checked on every edge against wall time."""
    assert run.proxy.subscribers is not None
    wall = 1_700_000_000.0
    run.proxy.subscribers.wall_offset = wall - run.now
    request, challenge = challenged(run, "INVITE")
    nonce = _nonce_of(challenge)
    # Good for the registrar and the other edges, which check it on their wall clocks.
    keeper = NonceKeeper(b"deployment-secret", 300)
    assert keeper.check(nonce, DOMAIN, wall) is NonceState.FRESH
    actions = run.send(with_credentials(request, challenge, "INVITE", PASSWORD), ALICE)
    assert [type(a.query) for a in actions if isinstance(a, Lookup)] == [NonceCountQuery]


def test_a_cancel_while_the_bindings_are_read_ends_the_call_with_487(run: Run) -> None:
    carol = f"sip:carol@{DOMAIN}"
    actions = run.send(call(carol))
    assert [type(a) for a in actions if isinstance(a, Lookup)] == [Lookup]  # parked
    cancel = call(carol).replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    assert statuses(run.send(cancel), CARRIER) == [200, 487]
    [lookup] = [a for a in actions if isinstance(a, Lookup)]
    assert run.proxy.resume(lookup.server, run.now) == []  # the answer comes too late: nothing


def test_a_subscriber_without_bindings_is_480_and_a_stranger_goes_to_number_routing(
    run: Run,
) -> None:
    carol, dave = f"sip:carol@{DOMAIN}", f"sip:dave@{DOMAIN}"
    run.directory.learn(BindingsQuery(carol), (), run.now)
    run.directory.learn(SubscriberQuery("carol", DOMAIN), True, run.now)
    run.directory.learn(BindingsQuery(dave), (), run.now)
    run.directory.learn(SubscriberQuery("dave", DOMAIN), False, run.now)
    unavailable = final_of(run.send(call(carol)), CARRIER)
    assert (unavailable.status, unavailable.reason) == (480, "Temporarily Unavailable")
    unknown = final_of(run.send(call(dave, branch="z9hG4bKc9")), CARRIER)
    assert (unknown.status, unknown.reason) == (404, "Not Found")


def test_a_failed_location_read_is_503(run: Run) -> None:
    actions = run.send(call(f"sip:carol@{DOMAIN}"))
    [lookup] = [a for a in actions if isinstance(a, Lookup)]
    [data] = sent_to(run.proxy.resume(lookup.server, run.now, failed=True), CARRIER)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (503, "Service Unavailable (location)")


def test_a_forged_flow_token_is_403(run: Run) -> None:
    bye = (
        f"BYE sip:bob@192.0.2.21:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKf1\r\n"
        f"Route: <sip:{EDGE}:5060;lr;{FLOW_PARAM}=Zm9yZ2Vk.bad>\r\n"
        "From: <sip:carrier@example.com>;tag=c1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
        "Call-ID: flow-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    [data] = sent_to(run.send(bye), CARRIER)
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (403, "Forbidden (bad flow token)")


def test_an_ack_along_a_forged_flow_token_is_dropped_unanswered(run: Run) -> None:
    """An ACK is never answered, not even with the 403 a BYE along that token gets."""
    ack = (
        f"ACK sip:bob@192.0.2.21:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKf9\r\n"
        f"Route: <sip:{EDGE}:5060;lr;{FLOW_PARAM}=Zm9yZ2Vk.bad>\r\n"
        "From: <sip:carrier@example.com>;tag=c1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
        "Call-ID: flow-1\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert run.send(ack) == []


def test_a_call_to_a_path_binding_carries_the_path_as_its_route_set(run: Run) -> None:
    path = ("<sip:203.0.113.7:5070;lr>", "<sip:203.0.113.8;lr>")
    carol = f"sip:carol@{DOMAIN}"
    binding = located(aor=carol, contact="sip:carol@10.1.1.1:5060", path=path)
    run.directory.learn(BindingsQuery(carol), (binding,), run.now)
    forwarded = only_request(run.send(call(carol)), Destination("udp", "203.0.113.7", 5070))
    assert forwarded.headers("route") == list(path)
    assert forwarded.uri_text == "sip:carol@10.1.1.1:5060"


def test_an_unusable_stored_binding_does_not_hide_the_others() -> None:
    broken = located(contact="sip:bob@[::1", received="sip:[::1")
    hops = binding_hops((broken, located()), FLOWS, OURS)
    assert [hop.uri for hop in hops] == ["sip:bob@192.0.2.21:5060"]


def test_a_request_along_a_flow_token_goes_to_that_flow_unchanged(run: Run) -> None:
    token = FlowTokens(b"deployment-secret").mint(PHONE)
    bye = (
        "BYE sip:bob@10.9.9.9:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKf2\r\n"
        f"Route: <sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('flow-2', token)}>\r\n"
        "From: <sip:carrier@example.com>;tag=c1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
        "Call-ID: flow-2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    forwarded = only_request(run.send(bye), PHONE)
    assert forwarded.uri_text == "sip:bob@10.9.9.9:5060"
    # From the flow itself, the token is no way back to it: the Request-URI is followed.
    from_phone = bye.replace(b"z9hG4bKf2", b"z9hG4bKf3").replace(b"198.51.100.99", b"192.0.2.21")
    assert sent_to(run.send(from_phone, PHONE), Destination("udp", "10.9.9.9", 5060))


def test_a_call_handed_over_along_a_flow_token_is_record_routed_with_a_loop_hash(
    run: Run,
) -> None:
    """Another edge's call to a phone whose flow is here: the dialog must come back through
    this edge (its Record-Route, with the flow), and a loop must still be seen (§16.6 step 8)."""
    token = FlowTokens(b"deployment-secret").mint(PHONE)
    route = f"<sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('flow-3', token)}>"
    data = call(extra=f"Route: {route}\r\n").replace(b"Call-ID: call-7", b"Call-ID: flow-3")
    forwarded = only_request(run.send(data), PHONE)
    [record_route] = forwarded.headers("record-route")
    uri = parse_address(record_route).uri
    assert isinstance(uri, SipUri) and uri.param(FLOW_PARAM) == token
    received = parse_message(data)
    assert isinstance(received, Request)
    assert hash_in_branch(forwarded.top_via.branch) == loop_hash(received)


def test_a_call_handed_over_along_a_flow_from_behind_nat_records_the_callers_flow_too(
    run: Run,
) -> None:
    """An untrusted sender the far end can reach only where it sent from: the dialog's
    requests back to it need its flow as much as the callee's need the phone's."""
    token = FlowTokens(b"deployment-secret").mint(PHONE)
    route = f"<sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('flow-4', token)}>"
    data = call(extra=f"Route: {route}\r\n").replace(b"Call-ID: call-7", b"Call-ID: flow-4")
    natted = Destination("udp", "203.0.113.60", 40002)
    forwarded = only_request(run.send(data, natted), PHONE)
    [record_route] = forwarded.headers("record-route")
    uri = parse_address(record_route).uri
    assert isinstance(uri, SipUri)
    callee, caller = (uri.param(FLOW_PARAM) or "").split(FLOW_SEPARATOR)
    assert callee == token
    assert run.proxy.subscribers is not None
    assert run.proxy.subscribers.flows.open(caller) == natted


def along_flow(run: Run, method: str, branch: str, extra: str = "") -> bytes:
    """`method` in the dialog flow-2, along our Route with a flow token to PHONE."""
    token = FlowTokens(b"deployment-secret").mint(PHONE)
    return (
        f"{method} sip:bob@10.9.9.9:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.99:5060;branch={branch}\r\n"
        f"Route: <sip:{EDGE}:5060;lr{run.proxy.dialogs.route_params('flow-2', token)}>\r\n"
        "From: <sip:carrier@example.com>;tag=c1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
        f"Call-ID: flow-2\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_an_ack_along_a_flow_token_goes_to_that_flow_unless_it_came_from_it(run: Run) -> None:
    ack = along_flow(run, "ACK", "z9hG4bKa2")
    assert only_request(run.send(ack), PHONE).method == "ACK"
    from_phone = ack.replace(b"z9hG4bKa2", b"z9hG4bKa3").replace(b"198.51.100.99", b"192.0.2.21")
    [sent] = sent_to(run.send(from_phone, PHONE), Destination("udp", "10.9.9.9", 5060))
    assert sent.startswith(b"ACK sip:bob@10.9.9.9:5060 ")


def test_a_request_over_the_mtu_along_a_flow_stays_on_the_flow(run: Run) -> None:
    """A flow is the only way to a NATed phone: no switch to TCP for size (§18.1.1)."""
    run.proxy.interfaces = Interfaces(
        [Interface("udp", EDGE, 5060, 5060), Interface("tcp", EDGE, 5060, 5060)]
    )
    bulk = "".join(f"X-Pad-{i}: {'x' * 60}\r\n" for i in range(30))
    bye = along_flow(run, "BYE", "z9hG4bKm1", extra=bulk)
    assert len(bye) > run.proxy.udp_mtu
    forwarded = only_request(run.send(bye), PHONE)
    assert forwarded.top_via.transport == "UDP"
