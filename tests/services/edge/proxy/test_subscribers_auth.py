"""Who must authenticate at the edge, attacked as `svwar` and a stranger would (sans-IO).

Every out-of-dialog request from an untrusted source that would reach a
subscriber or a gateway is challenged before the callee is looked up, so a
known and an unknown user get the same answers: 407, then 403 for a wrong
password.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from services.edge.location import DomainQuery, Ha1Query, Query
from services.edge.location.directory import Answer
from services.edge.proxy.actions import Action, AuthFailed, Lookup
from shared.sip.auth.digest import authorize, compute_ha1, compute_response, parse_challenge
from shared.sip.auth.offer import DigestOffer
from shared.sip.message import Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import EDGE, GW1, only_request, sent_to, statuses
from tests.services.edge.proxy.test_subscribers import (
    BOB,
    CARRIER,
    DESK,
    DOMAIN,
    PASSWORD,
    PHONE,
    TABLET,
    Run,
    bobs_register,
    run,
)

__all__ = ["run"]  # the fixture, shared with test_subscribers

STRANGER = Destination("udp", "192.0.2.66", 5060)
NEXT_HOP = Destination("udp", "203.0.113.77", 5060)
METHODS = (
    "INVITE",
    "SUBSCRIBE",
    "REFER",
    "MESSAGE",
    "OPTIONS",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "UPDATE",
    "BYE",
)
NONCE = re.compile(rb'nonce="[^"]+"')


def request(
    method: str,
    to: str = BOB,
    *,
    caller: str = "alice",
    extra: str = "",
    branch: str = "z9hG4bKs1",
) -> bytes:
    return (
        f"{method} {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {STRANGER.host}:5060;branch={branch}\r\n"
        f"From: <sip:{caller}@{DOMAIN}>;tag=s1\r\n"
        f"To: <{to}>\r\n"
        "Call-ID: stranger-1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:{caller}@{STRANGER.host}:5060>\r\n"
        "Event: presence\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def final(actions: list[Action], destination: Destination = STRANGER) -> bytes:
    """The one final response sent to `destination`."""
    finals = [data for data in sent_to(actions, destination) if not data.startswith(b"SIP/2.0 1")]
    assert len(finals) == 1, finals
    return finals[0]


def nothing_reached_a_phone_or_gateway(actions: list[Action]) -> None:
    for where in (PHONE, TABLET, DESK, GW1, NEXT_HOP):
        assert sent_to(actions, where) == []


def answered(run: Run, method: str, to: str, **options: str) -> list[Action]:
    """What a stranger gets for `method` to `to` with a cache that knows only the domain:
    any lookup of the callee would show as a `Lookup`."""
    run.directory.forget_all()
    run.directory.learn(DomainQuery(DOMAIN), True, run.now)
    return run.send(request(method, to, **options), STRANGER)


@pytest.mark.parametrize("method", METHODS)
def test_a_stranger_is_challenged_before_the_callee_is_looked_up(run: Run, method: str) -> None:
    known = answered(run, method, BOB)
    unknown = answered(run, method, f"sip:nobody@{DOMAIN}", branch="z9hG4bKs2")
    for actions in (known, unknown):
        assert not [a for a in actions if isinstance(a, Lookup)]
        assert statuses(actions, STRANGER)[-1] == 407
        nothing_reached_a_phone_or_gateway(actions)
    # Byte for byte the same answer, but for the names and the fresh nonce.
    same = final(unknown).replace(b"nobody", b"bob").replace(b"z9hG4bKs2", b"z9hG4bKs1")
    assert NONCE.sub(b"", same) == NONCE.sub(b"", final(known))


@pytest.mark.parametrize("method", ("MESSAGE", "OPTIONS", "INFO"))
def test_a_stranger_reaches_no_gateway_without_authenticating(run: Run, method: str) -> None:
    actions = run.send(request(method, f"sip:14075551234@{EDGE}"), STRANGER)
    assert statuses(actions, STRANGER) == [407]
    assert sent_to(actions, GW1) == []
    trusted = request(method, f"sip:14075551234@{EDGE}", branch="z9hG4bKs10")
    relayed = run.send(trusted.replace(STRANGER.host.encode(), CARRIER.host.encode()), CARRIER)
    assert only_request(relayed, GW1).method == method  # the positive control


def digest_answer(challenge: bytes, method: str, user: str, password: str, uri: str) -> str:
    response = parse_message(challenge)
    assert isinstance(response, Response)
    credentials = authorize(
        parse_challenge(response.header("proxy-authenticate") or ""),
        username=user,
        password=password,
        method=method,
        uri=uri,
        cnonce="c0ffee",
    )
    return f"Proxy-Authorization: {credentials}\r\n"


def authenticated(run: Run, method: str, caller: str, password: str, to: str = BOB) -> list[Action]:
    """Challenged, then answered with `password` as `caller`; what the answer brought."""
    first = request(method, to, caller=caller, branch=f"z9hG4bK{caller}1")
    challenge = final(run.send(first, STRANGER))
    extra = digest_answer(challenge, method, caller, password, to)
    actions = run.send(
        request(method, to, caller=caller, extra=extra, branch=f"z9hG4bK{caller}2"), STRANGER
    )
    redis: dict[Query, Answer] = defaultdict(lambda: True)  # a nonce-count's first use
    redis[Ha1Query("alice", DOMAIN, "MD5")] = compute_ha1("alice", DOMAIN, PASSWORD)
    redis[Ha1Query("mallory", DOMAIN, "MD5")] = None  # no such subscriber
    return run.resolve(actions, redis)


@pytest.mark.parametrize("method", ("INVITE", "SUBSCRIBE", "REFER", "MESSAGE"))
def test_a_wrong_password_is_403_for_a_known_and_an_unknown_caller(run: Run, method: str) -> None:
    answers = []
    for caller in ("alice", "mallory"):  # alice is a subscriber, mallory is not
        actions = authenticated(run, method, caller, "guessed")
        nothing_reached_a_phone_or_gateway(actions)
        [failed] = [action for action in actions if isinstance(action, AuthFailed)]  # counted,
        assert (failed.user, failed.method) == (caller, method)  # the same for either caller
        answers.append(
            final(run.proxy.refuse(failed.server, run.now)).replace(caller.encode(), b"someone")
        )
    known, unknown = answers
    assert known.startswith(b"SIP/2.0 403 Forbidden\r\n")
    assert NONCE.sub(b"", known) == NONCE.sub(b"", unknown)


def test_a_subscribers_message_reaches_the_phones_without_its_credentials(run: Run) -> None:
    actions = authenticated(run, "MESSAGE", "alice", PASSWORD)
    for where in (PHONE, TABLET):
        message = only_request(actions, where)
        assert message.method == "MESSAGE"
        assert message.header("proxy-authorization") is None


def test_a_trusted_peers_message_is_not_challenged(run: Run) -> None:
    data = request("MESSAGE").replace(STRANGER.host.encode(), CARRIER.host.encode())
    actions = run.send(data, CARRIER)
    assert [only_request(actions, where).method for where in (PHONE, TABLET)] == ["MESSAGE"] * 2


def test_a_strangers_pre_loaded_route_is_refused_a_trusted_peers_followed(run: Run) -> None:
    """As Kamailio's "Preload Route denied": a stranger's own route set is never followed,
    whether or not it could authenticate, and the answer names no user."""
    route = f"Route: <sip:{NEXT_HOP.host}:{NEXT_HOP.port};lr>\r\n"
    actions = run.send(request("MESSAGE", extra=route), STRANGER)
    assert final(actions).startswith(b"SIP/2.0 403 Forbidden (preloaded Route)\r\n")
    nothing_reached_a_phone_or_gateway(actions)
    trusted = request("MESSAGE", extra=route, branch="z9hG4bKs4")
    relayed = run.send(trusted.replace(STRANGER.host.encode(), CARRIER.host.encode()), CARRIER)
    assert only_request(relayed, NEXT_HOP).method == "MESSAGE"  # the route, not bob's phones
    assert sent_to(relayed, PHONE) == []


def test_a_request_for_the_edge_itself_is_not_challenged(run: Run) -> None:
    options = run.send(request("OPTIONS", f"sip:{EDGE}"), STRANGER)
    assert statuses(options, STRANGER) == [200]
    message = run.send(request("MESSAGE", f"sip:{EDGE}", branch="z9hG4bKs5"), STRANGER)
    assert statuses(message, STRANGER) == [404]


def test_challenges_offer_md5_unless_the_domain_is_given_more(run: Run) -> None:
    def offered(actions: list[Action], header: str) -> list[str]:
        response = parse_message(final(actions))
        assert isinstance(response, Response)
        return [parse_challenge(value).algorithm for value in response.headers(header)]

    assert offered(run.send(request("MESSAGE"), STRANGER), "proxy-authenticate") == ["MD5"]
    assert run.proxy.subscribers is not None
    run.proxy.subscribers.offer = DigestOffer.parse("MD5", f"{DOMAIN}=SHA-256,MD5")
    again = run.send(request("MESSAGE", branch="z9hG4bKs6"), STRANGER)
    assert offered(again, "proxy-authenticate") == ["SHA-256", "MD5"]
    register = request("REGISTER", f"sip:{DOMAIN}", branch="z9hG4bKs7").replace(
        b"<sip:alice@", b"<sip:bob@"
    )
    assert offered(run.send(register, STRANGER), "www-authenticate") == ["SHA-256", "MD5"]


@pytest.mark.parametrize(
    "offer",
    ["SHA-256", f"MD5 {DOMAIN}=SHA-256"],  # MD5 off everywhere, or in the caller's realm only
)
def test_an_answer_in_an_algorithm_not_offered_is_challenged_again(run: Run, offer: str) -> None:
    challenge = final(run.send(request("MESSAGE", branch="z9hG4bKs8"), STRANGER))
    assert run.proxy.subscribers is not None
    run.proxy.subscribers.offer = DigestOffer.parse(*offer.split())  # switched meanwhile
    extra = digest_answer(challenge, "MESSAGE", "alice", PASSWORD, BOB)  # in MD5
    actions = run.send(request("MESSAGE", extra=extra, branch="z9hG4bKs9"), STRANGER)
    assert statuses(actions, STRANGER) == [407]
    nothing_reached_a_phone_or_gateway(actions)


# ----- what the challenges and refusals say ----------------------------------------------


def test_a_first_challenge_is_not_stale_and_a_made_up_nonce_gets_a_fresh_one(run: Run) -> None:
    challenge = final(answered(run, "INVITE", BOB))
    response = parse_message(challenge)
    assert isinstance(response, Response) and response.status == 407
    assert parse_challenge(response.header("proxy-authenticate") or "").stale is False
    made_up = digest_answer(challenge, "INVITE", "alice", PASSWORD, BOB)
    made_up = NONCE.sub(b'nonce="made-up"', made_up.encode()).decode()
    again = final(answered(run, "INVITE", BOB, extra=made_up, branch="z9hG4bKs2"))
    response = parse_message(again)
    assert isinstance(response, Response) and response.status == 407
    assert b'nonce="made-up"' not in again


def test_a_registers_challenge_and_a_blocked_sources_refusal_say_so(run: Run) -> None:
    challenge = parse_message(final(run.send(bobs_register("1"), PHONE), PHONE))
    assert isinstance(challenge, Response)
    assert (challenge.status, challenge.reason) == (401, "Unauthorized")
    subscribers = run.proxy.subscribers
    assert subscribers is not None
    subscribers.blocks.add("source", PHONE.host, run.now + subscribers.wall_offset + 60)
    refusal = parse_message(final(run.send(bobs_register("2"), PHONE), PHONE))
    assert isinstance(refusal, Response)
    assert (refusal.status, refusal.reason) == (403, "Forbidden")


def test_a_register_in_an_algorithm_its_domain_no_longer_offers_is_challenged_again(
    run: Run,
) -> None:
    """The offer is per realm (the To's domain): MD5 elsewhere does not make it good here."""
    register = request("REGISTER", f"sip:{DOMAIN}", branch="z9hG4bKr1").replace(
        b"<sip:alice@", b"<sip:bob@"
    )
    response = parse_message(final(run.send(register, STRANGER)))
    assert isinstance(response, Response) and response.status == 401
    assert run.proxy.subscribers is not None
    run.proxy.subscribers.offer = DigestOffer.parse("MD5", f"{DOMAIN}=SHA-256")
    credentials = authorize(
        parse_challenge(response.header("www-authenticate") or ""),
        username="bob",
        password=PASSWORD,
        method="REGISTER",
        uri=f"sip:{DOMAIN}",
        cnonce="c0ffee",
    )
    answered = register.replace(b"z9hG4bKr1", b"z9hG4bKr2").replace(
        b"Max-Forwards", f"Authorization: {credentials}\r\nMax-Forwards".encode()
    )
    again = parse_message(final(run.send(answered, STRANGER)))
    assert isinstance(again, Response) and again.status == 401
    assert [parse_challenge(value).algorithm for value in again.headers("www-authenticate")] == [
        "SHA-256"
    ]


def test_a_right_password_with_a_nonce_count_that_is_no_number_is_400(run: Run) -> None:
    """The digest verifies over any nc text, but a count the replay check cannot read is
    refused (400 naming it) before any claim: never "no count", which would skip the check."""
    challenge = parse_message(final(answered(run, "MESSAGE", BOB)))
    assert isinstance(challenge, Response)
    offered = parse_challenge(challenge.header("proxy-authenticate") or "")
    response = compute_response(
        compute_ha1("alice", DOMAIN, PASSWORD),
        method="MESSAGE",
        uri=BOB,
        nonce=offered.nonce,
        qop="auth",
        nc="zz",
        cnonce="c0ffee",
    )
    extra = (
        f'Proxy-Authorization: Digest username="alice", realm="{DOMAIN}", '
        f'nonce="{offered.nonce}", uri="{BOB}", response="{response}", algorithm=MD5, '
        'qop=auth, nc=zz, cnonce="c0ffee"\r\n'
    )
    actions = run.send(request("MESSAGE", extra=extra, branch="z9hG4bKs3"), STRANGER)
    ha1 = compute_ha1("alice", DOMAIN, PASSWORD)
    actions = run.resolve(actions, {Ha1Query("alice", DOMAIN, "MD5"): ha1})
    refusal = parse_message(final(actions))
    assert isinstance(refusal, Response)
    assert (refusal.status, refusal.reason) == (400, "malformed digest nc")
    nothing_reached_a_phone_or_gateway(actions)
