"""Calls to and from subscribers through the sans-IO core: forking, 401/407, replays."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from services.edge.interfaces import Interface, Interfaces
from services.edge.location import (
    BindingsQuery,
    Directory,
    DomainQuery,
    Ha1Query,
    NonceCountQuery,
    Query,
)
from services.edge.location.directory import Answer
from services.edge.proxy.actions import Action, AuthFailed, Lookup, Register
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FlowTokens
from services.edge.proxy.routes import NumberRouter
from services.edge.proxy.subscribers import Subscribers
from shared.registrar.model import Location
from shared.sip.auth.digest import authorize, compute_ha1, parse_challenge
from shared.sip.auth.nonces import NonceKeeper
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri
from tests.services.edge.proxy.test_core import (
    EDGE,
    GW1,
    UDP_IN,
    Table,
    answer,
    only_request,
    sent_to,
    statuses,
)

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
        aor=BOB, contact=contact, expires_at=10_000.0, q=q, received=contact,
        transport="udp", edge="edge-a",
    )  # fmt: skip


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
        directory, FlowTokens(secret), NonceKeeper(secret, 300), lambda source: source == CARRIER,
    )  # fmt: skip
    proxy = Proxy(
        interfaces, NumberRouter(Table()), ProxyTimers(fr=2.0, fr_inv=10.0),
        subscribers=subscribers,
        dialogs=DialogGate(RecordRouteSigner.ephemeral(), subscribers.trusted),
    )  # fmt: skip
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


def test_a_6xx_ends_the_forking_once_the_cancelled_branches_have_ended(run: Run) -> None:
    phone, tablet = invites_to(run.send(call()), PHONE, TABLET)
    run.send(answer(tablet, 180), TABLET)
    actions = run.send(answer(phone, 603), PHONE)
    assert only_request(actions, TABLET).method == "CANCEL"
    assert sent_to(actions, DESK) == []
    assert statuses(actions, CARRIER) == []  # §16.7 step 5: not forwarded at once
    assert statuses(run.send(answer(tablet, 487), TABLET), CARRIER) == [603]


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
        challenge, username="bob", password=PASSWORD, method="REGISTER",
        uri=f"sip:{DOMAIN}", cnonce="abc",
    )  # fmt: skip
    answered = register.replace(b"z9hG4bKr1", b"z9hG4bKr2").replace(b"1 REGISTER", b"2 REGISTER")
    answered = answered.replace(
        b"Content-Length", f"Authorization: {credentials}\r\nContent-Length".encode()
    )
    actions = run.send(answered, PHONE)
    assert [type(a) for a in actions] == [Register]  # the registrar verifies it


def authorized_call(run: Run, challenge_response: bytes, *, branch: str, nc: int = 1) -> bytes:
    response = parse_message(challenge_response)
    assert isinstance(response, Response)
    challenge = parse_challenge(response.header("proxy-authenticate") or "")
    uri = f"sip:14075551234@{EDGE}"
    credentials = authorize(
        challenge, username="alice", password=PASSWORD, method="INVITE", uri=uri,
        cnonce="c0ffee", nc=nc,
    )  # fmt: skip
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


# ----- failed authentications: counted, then refused while blocked (issue 13 item 3) -----


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
        challenge, username="alice", password=password, method="INVITE", uri=uri,
        cnonce="c0ffee",
    )  # fmt: skip
    extra = f"Proxy-Authorization: {credentials}\r\n"
    return alice, call(uri, branch="z9hG4bKa9", caller="alice", extra=extra)


def test_a_wrong_password_is_counted_before_its_403(run: Run) -> None:
    alice, guess = alice_with_password(run, "guess")
    actions = run.send(guess, alice)
    [failed] = [a for a in actions if isinstance(a, AuthFailed)]
    assert (failed.user, failed.realm, failed.method, failed.source) == (
        "alice", DOMAIN, "INVITE", alice,
    )  # fmt: skip
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
        aor=BOB, contact="sip:bob@10.0.0.7:5060", expires_at=10_000.0, q=None,
        received="sip:203.0.113.40:40001", transport="udp", edge="edge-b",
        edge_address=f"sip:{other_edge.host}:{other_edge.port}",
    )  # fmt: skip
    run.directory.learn(BindingsQuery(BOB), (natted,), 0.0)
    forwarded = only_request(run.send(call()), other_edge)
    [route] = forwarded.routes
    assert isinstance(route.uri, SipUri)
    flow, token = route.uri.param("cm-flow"), route.uri.param("cm-rr")
    assert flow and token
    assert run.proxy.dialogs.signer.verify(token, forwarded.call_id, flow)
    assert not run.proxy.dialogs.signer.verify(token, "another-call", flow)
