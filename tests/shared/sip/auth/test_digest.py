"""Digest authentication: syntax, RFC 2617 / RFC 7616 test vectors, verification from HA1."""

from __future__ import annotations

import hashlib

import pytest

from shared.sip.auth.digest import (
    Challenge,
    Credentials,
    authorize,
    compute_ha1,
    compute_response,
    parse_auth_params,
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
        ha1,
        method="INVITE",
        uri="sip:bob@example.com",
        nonce="n1",
        qop="auth-int",
        nc="00000001",
        cnonce="c1",
        body=body,
    )
    assert response == expected.hexdigest()


# ----- what the mutation run found unguarded ----------------------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


CHALLENGE = Challenge(realm="r", nonce="n", qop=("auth-int", "auth"), opaque="op")


def test_authorize_prefers_auth_counts_from_one_and_echoes_opaque() -> None:
    credentials = authorize(
        CHALLENGE, username="u", password="p", method="INVITE", uri="sip:x", cnonce="c"
    )
    text = str(credentials)
    assert text.startswith("Digest username=")
    assert "qop=auth," in text and "nc=00000001," in text and 'opaque="op"' in text
    ha2 = md5("INVITE:sip:x")
    assert credentials.response == md5(f"{md5('u:r:p')}:n:00000001:c:auth:{ha2}")


@pytest.mark.parametrize(
    ("offered", "chosen"), [(("auth-int",), "auth-int"), (("auth", "auth-int"), "auth"), ((), None)]
)
def test_authorize_takes_auth_else_the_first_qop_offered(
    offered: tuple[str, ...], chosen: str | None
) -> None:
    challenge = Challenge(realm="r", nonce="n", qop=offered)
    credentials = authorize(
        challenge, username="u", password="p", method="MESSAGE", uri="sip:x", cnonce="c"
    )
    assert credentials.qop == chosen
    assert ("cnonce" in credentials.params) is (chosen is not None)
    assert verify(credentials, method="MESSAGE", ha1=md5("u:r:p"))


def test_a_challenge_without_qop_or_algorithm_means_none_and_md5() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    assert (challenge.qop, challenge.algorithm, challenge.opaque) == ((), "MD5", None)
    assert str(challenge) == 'Digest realm="r", nonce="n", algorithm=MD5'


@pytest.mark.parametrize("missing", ["nc", "cnonce"])
def test_qop_without_nc_or_cnonce_does_not_verify(missing: str) -> None:
    good = authorize(CHALLENGE, username="u", password="p", method="BYE", uri="s", cnonce="c")
    assert verify(good, method="BYE", ha1=md5("u:r:p"))  # the control
    params = {k: v for k, v in good.params.items() if k != missing}
    assert not verify(Credentials("Digest", params), method="BYE", ha1=md5("u:r:p"))


def test_auth_int_without_a_body_hashes_the_empty_body() -> None:
    ha2 = md5(f"INFO:sip:x:{md5('')}")
    expected = md5(f"ha1:n:00000001:c:auth-int:{ha2}")
    assert expected == compute_response(
        "ha1", method="INFO", uri="sip:x", nonce="n", qop="auth-int", nc="00000001", cnonce="c"
    )


def test_a_full_challenge_round_trips_through_its_header_text() -> None:
    challenge = Challenge(
        realm='say "hi" \\ bye',
        nonce="n",
        opaque="o",
        stale=True,
        domain="sip:example.com",
        qop=("auth", "auth-int"),
    )
    text = str(challenge)
    assert text == (
        'Digest realm="say \\"hi\\" \\\\ bye", domain="sip:example.com", nonce="n", '
        'opaque="o", stale=true, algorithm=MD5, qop="auth,auth-int"'
    )
    assert parse_challenge(text) == challenge


@pytest.mark.parametrize("algorithm", ["MD5-sess", "md5-sess", "SHA-256-sess"])
def test_session_algorithms_hash_the_nonce_and_cnonce_into_ha1(algorithm: str) -> None:
    name = "sha256" if algorithm.upper().startswith("SHA") else "md5"

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    session = h("ha1:n:c")
    expected = h(f"{session}:n:00000001:c:auth:{h('ACK:sip:x')}")
    assert expected == compute_response(
        "ha1",
        method="ACK",
        uri="sip:x",
        nonce="n",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="c",
    )


def test_qop_without_cnonce_does_not_verify_even_when_computed_without_one() -> None:
    """RFC 2617: with qop the client must send a cnonce; an answer computed without is no proof."""
    response = compute_response(
        "ha1", method="BYE", uri="s", nonce="n", qop="auth", nc="00000001", cnonce=None
    )
    params = {"nonce": "n", "uri": "s", "qop": "auth", "nc": "00000001", "response": response}
    assert not verify(Credentials("Digest", params), method="BYE", ha1="ha1")


def test_unsupported_algorithms_and_bare_challenges_say_what_is_wrong() -> None:
    with pytest.raises(SipParseError, match=r"^unsupported digest algorithm SHA-1$"):
        compute_ha1("u", "r", "p", "SHA-1")
    with pytest.raises(SipParseError, match=r"^Digest challenge without realm or nonce$"):
        parse_challenge('Digest realm="r"')


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('Digest a="x\\\\", b=1', {"a": "x\\", "b": "1"}),  # an escaped backslash ends the value
        ('Digest a="x\\', "unterminated"),  # a backslash at the very end
        ('Digest a="x\\"', "unterminated"),  # an escaped quote cannot close the string
        ('Digest Xa=Xy,\tb="q"X', "missing comma"),  # only blanks may follow a quoted value
        ("Digest Xa=Xy,\tXb=2", {"xa": "Xy", "xb": "2"}),  # only blanks are skipped
        ("Digest a=,b=2", {"a": "", "b": "2"}),  # an empty token value
        ('Digest a= \t"q"', {"a": "q"}),  # blanks before a quoted value
        ('Digest a=   "q"', {"a": "q"}),
        ('Digest a="x"   , b=1', {"a": "x", "b": "1"}),  # blanks between a value and its comma
        ("Digest a=1,,b=2", {"a": "1", "b": "2"}),  # an empty list element
        ("Digest a=", {"a": ""}),
        ("Digest a=1,", {"a": "1"}),  # a trailing comma
    ],
)
def test_auth_params_edge_cases(text: str, parsed: dict[str, str] | str) -> None:
    """`parsed`: the parameters, or the error the text must raise."""
    if isinstance(parsed, str):
        with pytest.raises(SipParseError, match=parsed):
            parse_auth_params(text)
        return
    assert parse_auth_params(text) == ("Digest", parsed)
