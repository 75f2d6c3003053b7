"""HTTP Digest for SIP (RFC 3261 §22.4, RFC 2617, RFC 8760 SHA-256): parse, build, compute, verify.

Verification works from HA1 = H(username:realm:password) so a registrar can
store HA1 instead of passwords.  Nonce issuing and expiry policy is the
caller's business; this module only does the arithmetic and the syntax.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final

from shared.sip.errors import SipParseError
from shared.sip.headers import TOKEN_CHARS

_HASHES: Final = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_UNQUOTED: Final = frozenset({"algorithm", "qop", "nc", "stale"})
"""Parameters written as tokens; every other digest parameter is a quoted-string (RFC 2617 §3.2)."""


def _hash(algorithm: str, text: str | bytes) -> str:
    """Hex digest of `text` (UTF-8) or of raw `bytes` (a body, for auth-int)."""
    name = _HASHES.get(algorithm.upper().removesuffix("-SESS"))
    if name is None:
        raise SipParseError(f"unsupported digest algorithm {algorithm}")
    return hashlib.new(name, text.encode() if isinstance(text, str) else text).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format(scheme: str, params: dict[str, str]) -> str:
    parts = [f"{n}={v if n in _UNQUOTED else _quote(v)}" for n, v in params.items()]
    return f"{scheme} " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge (WWW-Authenticate / Proxy-Authenticate); `str()` is the header value."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    def __str__(self) -> str:
        params = {"realm": self.realm}
        if self.domain is not None:
            params["domain"] = self.domain
        params["nonce"] = self.nonce
        if self.opaque is not None:
            params["opaque"] = self.opaque
        if self.stale:
            params["stale"] = "true"
        params["algorithm"] = self.algorithm
        text = _format("Digest", params)
        if self.qop:
            text += f", qop={_quote(','.join(self.qop))}"
        return text


@dataclass(frozen=True, slots=True)
class Credentials:
    """Authorization / Proxy-Authorization: the scheme and its parameters (unquoted).

    Other schemes than Digest parse too (RFC 4475 §3.3.7) so a server can
    answer them with a challenge instead of a 400.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def _get(self, name: str) -> str | None:
        return self.params.get(name)

    @property
    def username(self) -> str | None:
        return self._get("username")

    @property
    def realm(self) -> str | None:
        return self._get("realm")

    @property
    def nonce(self) -> str | None:
        return self._get("nonce")

    @property
    def uri(self) -> str | None:
        return self._get("uri")

    @property
    def response(self) -> str | None:
        return self._get("response")

    @property
    def algorithm(self) -> str:
        return self._get("algorithm") or "MD5"

    @property
    def qop(self) -> str | None:
        return self._get("qop")

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def __str__(self) -> str:
        return _format(self.scheme, self.params)


def parse_auth_params(text: str) -> tuple[str, dict[str, str]]:
    """Split `Scheme a=b, c="d"` into the scheme and unquoted, lower-cased-name parameters."""
    text = text.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme or not TOKEN_CHARS.issuperset(scheme):
        raise SipParseError("malformed authentication scheme")
    params: dict[str, str] = {}
    i = 0
    n = len(rest)
    while i < n:
        eq = rest.find("=", i)
        if eq < 0:
            raise SipParseError("malformed authentication parameter")
        name = rest[i:eq].strip().lstrip(",").strip().lower()
        if not name or not TOKEN_CHARS.issuperset(name):
            raise SipParseError("malformed authentication parameter name")
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            value, i = _quoted(rest, i)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            value = rest[i:end].strip()
            i = end
        params[name] = value
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] != ",":
            raise SipParseError("malformed authentication parameters (missing comma)")
        i += 1
    return scheme, params


def _quoted(text: str, start: int) -> tuple[str, int]:
    out = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SipParseError("unterminated quoted string in authentication parameters")


def parse_credentials(text: str) -> Credentials:
    scheme, params = parse_auth_params(text)
    return Credentials(scheme, params)


def parse_challenge(text: str) -> Challenge:
    """Parse a Digest challenge; other schemes raise `SipParseError`."""
    scheme, params = parse_auth_params(text)
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme}")
    if "realm" not in params or "nonce" not in params:
        raise SipParseError("Digest challenge without realm or nonce")
    qop = tuple(q.strip() for q in params["qop"].split(",")) if "qop" in params else ()
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
    )


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password), what a registrar stores instead of the password."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The `response` value for a request, from the plain (non-session) HA1."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + _hash(algorithm, body)
    ha2 = _hash(algorithm, a2)
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc or ''}:{cnonce or ''}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def verify(credentials: Credentials, *, method: str, ha1: str, body: bytes = b"") -> bool:
    """True if `credentials` hold the right response for `method`, given the stored HA1.

    Checks the arithmetic only: the caller checks realm, nonce freshness and
    that `credentials.uri` matches the Request-URI.  Never raises for a
    malformed or unsupported answer; it just does not verify.
    """
    params = credentials.params
    response = params.get("response")
    if not credentials.is_digest or response is None or "nonce" not in params:
        return False
    qop = params.get("qop")
    if qop and ("nc" not in params or "cnonce" not in params):
        return False
    try:
        expected = compute_response(
            ha1,
            method=method,
            uri=params.get("uri", ""),
            nonce=params["nonce"],
            algorithm=credentials.algorithm,
            qop=qop,
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            body=body,
        )
    except SipParseError:
        return False
    return hmac.compare_digest(expected, response.lower())


def authorize(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> Credentials:
    """The client's answer to `challenge` (a UAC or a test); picks `auth` when offered."""
    ha1 = compute_ha1(username, challenge.realm, password, challenge.algorithm)
    qop = "auth" if "auth" in challenge.qop else (challenge.qop[0] if challenge.qop else None)
    params = {"username": username, "realm": challenge.realm, "nonce": challenge.nonce, "uri": uri}
    nc_text = f"{nc:08x}"
    params["response"] = compute_response(
        ha1,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    params["algorithm"] = challenge.algorithm
    if qop:
        params.update(qop=qop, nc=nc_text, cnonce=cnonce)
    elif challenge.algorithm.upper().endswith("-SESS"):
        params["cnonce"] = cnonce
    if challenge.opaque is not None:
        params["opaque"] = challenge.opaque
    return Credentials("Digest", params)
