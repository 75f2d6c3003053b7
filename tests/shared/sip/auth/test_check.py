"""Digest checks of REGISTER, sans-IO: challenges, credentials, verdicts, nonce-counts."""

from __future__ import annotations

import pytest

from bench.registrar import Phone
from shared.sip.auth.check import (
    Verdict,
    challenge_headers,
    check_identity,
    credentials_for,
    judge,
    nonce_count,
)
from shared.sip.auth.digest import Credentials, authorize, compute_ha1, parse_challenge
from shared.sip.auth.nonces import NonceKeeper, NonceState
from shared.sip.errors import SipError
from shared.sip.message import Request, parse_message

KEEPER = NonceKeeper(b"secret", ttl=300)
REALM = "example.com"
BOTH = ("SHA-256", "MD5")


def challenged(phone: Phone, **options: object) -> tuple[Request, Credentials]:
    headers = challenge_headers(KEEPER, REALM, 1000.0, BOTH)
    phone.challenge = next(
        c for c in (parse_challenge(v) for _, v in headers) if c.algorithm == phone.algorithm
    )
    message = parse_message(phone.register(**options))  # type: ignore[arg-type]
    assert isinstance(message, Request)
    credentials = credentials_for(message, REALM, BOTH)
    assert credentials is not None
    return message, credentials


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    headers = challenge_headers(KEEPER, REALM, 1000.0, BOTH, stale=True)
    challenges = [parse_challenge(value) for name, value in headers if name == "WWW-Authenticate"]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in challenges}) == 1
    assert all(c.stale and c.qop == ("auth",) for c in challenges)


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_right_password_accepted(algorithm: str) -> None:
    phone = Phone("alice", REALM, "pw", algorithm=algorithm)
    request, credentials = challenged(phone)
    ha1 = compute_ha1("alice", REALM, "pw", algorithm)
    assert judge(credentials, request, ha1, NonceState.FRESH) is Verdict.ACCEPTED
    assert judge(credentials, request, ha1, NonceState.STALE) is Verdict.STALE
    assert judge(credentials, request, None, NonceState.FRESH) is Verdict.FORBIDDEN
    wrong = compute_ha1("alice", REALM, "other", algorithm)
    assert judge(credentials, request, wrong, NonceState.FRESH) is Verdict.FORBIDDEN
    assert nonce_count(credentials) == 1


def test_credentials_of_other_realms_are_ignored() -> None:
    request, _ = challenged(Phone("alice", REALM, "pw"))
    assert credentials_for(request, "elsewhere.org", BOTH) is None


def test_an_algorithm_the_realm_does_not_offer_counts_as_no_credentials() -> None:
    request, _ = challenged(Phone("alice", REALM, "pw", algorithm="MD5"))
    assert credentials_for(request, REALM, ("SHA-256",)) is None  # challenged again
    assert credentials_for(request, REALM, ("MD5",)) is not None


def test_identity_must_match_the_aor() -> None:
    request, credentials = challenged(Phone("alice", REALM, "pw"))
    check_identity(credentials, request, "alice")
    with pytest.raises(
        SipError, match=r"^authenticated user may not register this address$"
    ) as raised:
        check_identity(credentials, request, "bob")
    assert raised.value.status == 403


def test_the_digest_uri_must_be_the_request_uri() -> None:
    request, credentials = challenged(Phone("alice", REALM, "pw"))
    request.uri_text = "sip:elsewhere.example.com"
    with pytest.raises(SipError, match=r"^digest uri does not match the Request-URI$") as raised:
        check_identity(credentials, request, "alice")
    assert raised.value.status == 400


@pytest.mark.parametrize(("nc", "count"), [("00000001", 1), ("0000000a", 10), ("00000010", 16)])
def test_the_nonce_count_is_read_as_hexadecimal(nc: str, count: int) -> None:
    credentials = Credentials(scheme="Digest", params={"nc": nc})
    assert nonce_count(credentials) == count


def test_credentials_for_our_realm_are_found_after_another_hops() -> None:
    """A request may carry an Authorization for each hop's realm: ours need not be first."""
    phone = Phone("alice", REALM, "pw")
    challenged(phone)
    data = phone.register()
    foreign = (
        b'Authorization: Digest username="alice", realm="elsewhere.org", nonce="n1", '
        b'uri="sip:elsewhere.org", response="0123456789abcdef0123456789abcdef"\r\n'
    )
    data = data.replace(b"Authorization: ", foreign + b"Authorization: ", 1)
    request = parse_message(data)
    assert isinstance(request, Request)
    assert len(request.headers("authorization")) == 2
    credentials = credentials_for(request, REALM, BOTH)
    assert credentials is not None and credentials.realm == REALM


def test_an_auth_int_answer_is_judged_over_the_body_it_came_with() -> None:
    challenge = parse_challenge(
        f'Digest realm="{REALM}", nonce="n1", qop="auth-int", algorithm=MD5'
    )
    body = b"v=0\r\n"
    credentials = authorize(
        challenge,
        username="alice",
        password="pw",
        method="MESSAGE",
        uri="sip:bob@example.com",
        cnonce="c0ffee",
        body=body,
    )
    ha1 = compute_ha1("alice", REALM, "pw")

    def message(content: bytes) -> Request:
        request = parse_message(
            b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n"
            b"Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(content), content)
        )
        assert isinstance(request, Request)
        return request

    assert judge(credentials, message(body), ha1, NonceState.FRESH) is Verdict.ACCEPTED
    assert judge(credentials, message(b"v=1\r\n"), ha1, NonceState.FRESH) is Verdict.FORBIDDEN
