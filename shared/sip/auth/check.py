"""Digest authentication of REGISTER (RFC 3261 §22, RFC 8760), sans-IO.

The registrar challenges with the realm's algorithms (``DigestOffer``: MD5
unless the domain is given more; one WWW-Authenticate each, same nonce) and
checks the answer against the stored HA1. Looking the HA1 up and tracking
nonce-counts is the caller's IO; everything decided here takes the message,
the HA1 and the time.
"""

from __future__ import annotations

import enum

from shared.sip.auth.digest import Challenge, Credentials, parse_credentials, verify
from shared.sip.auth.nonces import NonceKeeper, NonceState
from shared.sip.errors import SipParseError
from shared.sip.message import Request


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    STALE = "stale"
    """Right answer to an expired nonce: challenge again with stale=true."""
    FORBIDDEN = "forbidden"


def challenge_headers(
    nonces: NonceKeeper,
    realm: str,
    now: float,
    algorithms: tuple[str, ...],
    *,
    stale: bool = False,
    header: str = "WWW-Authenticate",
) -> list[tuple[str, str]]:
    """The challenge fields of a 401 (or, with ``header="Proxy-Authenticate"``, of the
    edge's 407): one per offered algorithm, one fresh nonce any node can verify."""
    nonce = nonces.mint(realm, now)
    return [
        (header, str(Challenge(realm, nonce, algorithm, stale=stale))) for algorithm in algorithms
    ]


def credentials_for(
    request: Request, realm: str, offered: tuple[str, ...], header: str = "authorization"
) -> Credentials | None:
    """The Digest Authorization (or ``header``, e.g. ``proxy-authorization``) answering our
    challenge for ``realm``, if the request has one.

    Credentials for other realms (meant for another hop) are ignored; a
    malformed Authorization raises ``SipParseError`` (a 400). An algorithm the
    realm's challenges do not offer counts as no credentials: the client gets
    our challenge (a domain offering SHA-256 alone is never answered in MD5).
    """
    for value in request.headers(header):
        credentials = parse_credentials(value)
        if not credentials.is_digest or credentials.realm != realm:
            continue
        if credentials.algorithm.upper() not in offered or not credentials.nonce:
            return None
        return credentials
    return None


def check_identity(credentials: Credentials, request: Request, user: str) -> None:
    """Who may register what: the digest user is the AoR's user, for this very request.

    Raises ``SipParseError`` (400) when the digest-uri is not the Request-URI
    (RFC 2617 §3.2.2.5) and 403 when someone registers an AoR not theirs.
    """
    if credentials.uri != request.uri_text:
        raise SipParseError("digest uri does not match the Request-URI")
    if credentials.username != user:
        raise SipParseError("authenticated user may not register this address", 403)


def judge(
    credentials: Credentials, request: Request, ha1: str | None, nonce_state: NonceState
) -> Verdict:
    """Whether the answer proves the password; ``ha1`` None means no such (enabled) subscriber."""
    if ha1 is None or not verify(credentials, method=request.method, ha1=ha1, body=request.body):
        return Verdict.FORBIDDEN
    return Verdict.STALE if nonce_state is NonceState.STALE else Verdict.ACCEPTED


def nonce_count(credentials: Credentials) -> int | None:
    """The nc value as a number; 0 without qop (such a nonce is good for one request only)."""
    text = credentials.params.get("nc")
    if text is None:
        return 0
    try:
        return int(text, 16)
    except ValueError:
        return None
