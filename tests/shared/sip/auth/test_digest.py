"""Digest authentication: syntax, RFC 2617 / RFC 7616 test vectors, verification from HA1."""

from __future__ import annotations

import hashlib

import pytest

from shared.sip.auth.digest import (
    Challenge,
    authorize,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
    verify,
)
from shared.sip.errors import SipParseError


def test_rfc2617_md5_vector() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = compute_response(
        ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == expected


def test_challenge_round_trip() -> None:
    challenge = Challenge("example.com", "abc123", algorithm="SHA-256", opaque="o", stale=True)
    text = str(challenge)
    assert text == (
        'Digest realm="example.com", nonce="abc123", opaque="o", stale=true, '
        'algorithm=SHA-256, qop="auth"'
    )
    assert parse_challenge(text) == challenge


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"])
@pytest.mark.parametrize("qop", [("auth",), ("auth-int",), ()])
def test_authorize_then_verify_from_ha1(algorithm: str, qop: tuple[str, ...]) -> None:
    challenge = Challenge("example.com", "n0nce", algorithm=algorithm, qop=qop)
    credentials = authorize(
        challenge,
        username="alice",
        password="s3cret",
        method="REGISTER",
        uri="sip:example.com",
        cnonce="c1",
        body=b"body",
    )
    parsed = parse_credentials(str(credentials))
    assert parsed == credentials
    assert parsed.username == "alice"
    ha1 = compute_ha1("alice", "example.com", "s3cret", algorithm)
    assert verify(parsed, method="REGISTER", ha1=ha1, body=b"body")
    wrong = compute_ha1("alice", "example.com", "guess", algorithm)
    assert not verify(parsed, method="REGISTER", ha1=wrong, body=b"body")
    assert not verify(parsed, method="INVITE", ha1=ha1, body=b"body")


def test_verify_rejects_incomplete_or_foreign_credentials() -> None:
    ha1 = compute_ha1("a", "r", "p")
    assert not verify(parse_credentials("Basic dXNlcjpwYXNz=x"), method="X", ha1=ha1)
    assert not verify(parse_credentials('Digest username="a", nonce="n"'), method="X", ha1=ha1)
    no_cnonce = 'Digest username="a", nonce="n", response="00", qop=auth'
    assert not verify(parse_credentials(no_cnonce), method="X", ha1=ha1)
    unknown = 'Digest username="a", nonce="n", response="00", algorithm=ROT13'
    assert not verify(parse_credentials(unknown), method="X", ha1=ha1)


def test_credentials_with_commas_and_escapes_in_quotes() -> None:
    credentials = parse_credentials(
        'Digest username="a\\"b", realm="x, y", nonce="n", uri="sip:a@b", response="r"'
    )
    assert credentials.username == 'a"b'
    assert credentials.realm == "x, y"
    assert credentials.algorithm == "MD5"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "malformed authentication scheme"),
        ("Digest realm", "malformed authentication parameter"),
        ('Digest realm="x', "unterminated quoted string in authentication parameters"),
        ('Digest realm="x" nonce="y"', "malformed authentication parameters (missing comma)"),
        ("Digest =x", "malformed authentication parameter name"),
    ],
)
def test_malformed_credentials(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_credentials(text)
    assert caught.value.reason == reason


def test_challenge_needs_digest_realm_and_nonce() -> None:
    with pytest.raises(SipParseError, match="unsupported authentication scheme"):
        parse_challenge('Basic realm="x"')
    with pytest.raises(SipParseError, match="without realm or nonce"):
        parse_challenge('Digest realm="x"')


def test_auth_int_hashes_the_body_bytes_themselves() -> None:
    """H(entity-body) is over the octets (RFC 2617 §3.2.2.3), 8-bit ones included."""
    body = "café".encode()
    ha1 = compute_ha1("alice", "example.com", "secret")
    ha2 = hashlib.md5(b"INVITE:sip:bob@example.com:" + hashlib.md5(body).hexdigest().encode())
    expected = hashlib.md5(f"{ha1}:n1:00000001:c1:auth-int:{ha2.hexdigest()}".encode())
    response = compute_response(
        ha1, method="INVITE", uri="sip:bob@example.com", nonce="n1", qop="auth-int",
        nc="00000001", cnonce="c1", body=body,
    )  # fmt: skip
    assert response == expected.hexdigest()
