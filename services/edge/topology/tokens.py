"""Sealed tokens: the state topology hiding keeps in the messages instead of in memory.

Every edge holding the shared key can open a token another edge (or itself
before a restart) sealed, which is what makes hiding dialog-less.  A token is
`base64url(key id ‖ nonce ‖ AES-GCM ciphertext+tag)` without padding, so it
fits a URI user part, a URI parameter or a Via parameter as is.

The nonce is synthetic (an HMAC of the plaintext under a key derived from the
secret) rather than random: sealing the same value twice gives the same
token, so a retransmitted INVITE leaves the edge byte-identical and the far
side sees one stable Contact and Call-ID per dialog.  The cost is that equal
plaintexts are recognisable as equal, which is exactly the property wanted.

A `kind` byte is bound as associated data, so a Via token cannot be replayed
as a Contact token.  The key id byte lets the edges rotate keys: a keyring
seals with its current key and opens with the current or the previous one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys import KEY_SIZES, parse_key_list
from shared.sip.errors import SipError

NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
_OVERHEAD: Final = 1 + NONCE_SIZE + TAG_SIZE
_NONCE_LABEL: Final = b"callmesh topology nonce"


class InvalidTokenError(SipError):
    """A token that is malformed (400) or does not open with any key we hold (403)."""


@dataclass(frozen=True, slots=True)
class TopologyKey:
    """One shared secret: `key_id` (0..255) travels in every token it seals."""

    key_id: int
    secret: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)
    _nonce_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 255:
            raise ValueError("topology key id must be 0..255")
        if len(self.secret) not in KEY_SIZES:
            raise ValueError("topology key must be 16, 24 or 32 bytes (AES-128/192/256)")
        object.__setattr__(self, "_aead", AESGCM(self.secret))
        nonce_key = hmac.digest(self.secret, _NONCE_LABEL, "sha256")
        object.__setattr__(self, "_nonce_key", nonce_key)

    def seal(self, kind: bytes, plaintext: bytes) -> str:
        nonce = hmac.digest(self._nonce_key, kind + plaintext, "sha256")[:NONCE_SIZE]
        sealed = self._aead.encrypt(nonce, plaintext, kind)
        raw = bytes((self.key_id,)) + nonce + sealed
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def open(self, kind: bytes, raw: bytes) -> bytes:
        try:
            return self._aead.decrypt(raw[1 : 1 + NONCE_SIZE], raw[1 + NONCE_SIZE :], kind)
        except InvalidTag:
            raise InvalidTokenError("topology token failed authentication", 403) from None


class Keyring:
    """The current key (seals and opens) and optionally the previous one (opens only).

    Rotation: deploy `new,old` to every edge, wait until dialogs sealed with
    `old` are over (longest call), then deploy `new` alone.
    """

    __slots__ = ("_by_id", "current", "previous")

    def __init__(self, current: TopologyKey, previous: TopologyKey | None = None) -> None:
        if previous is not None and previous.key_id == current.key_id:
            raise ValueError("the current and previous topology keys need different ids")
        self.current = current
        self.previous = previous
        self._by_id = {current.key_id: current}
        if previous is not None:
            self._by_id[previous.key_id] = previous

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """From `CALLMESH_TOPOLOGY_KEYS`: `id:base64key[,id:base64key]`, current first
        (`shared.keys`; the record-route keys are written the same way)."""
        keys = [TopologyKey(key_id, secret) for key_id, secret in parse_key_list(text)]
        return cls(keys[0], keys[1] if len(keys) == 2 else None)

    def seal(self, kind: bytes, plaintext: bytes) -> str:
        return self.current.seal(kind, plaintext)

    def open(self, kind: bytes, token: str) -> bytes:
        """The plaintext; `InvalidTokenError` 400 if malformed, 403 if foreign or tampered."""
        raw = _decode(token)
        key = self._by_id.get(raw[0])
        if key is None:
            raise InvalidTokenError("topology token sealed with an unknown key", 403)
        return key.open(kind, raw)


def _decode(token: str) -> bytes:
    if not token.isascii():
        raise InvalidTokenError("malformed topology token")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTokenError("malformed topology token") from None
    if len(raw) <= _OVERHEAD:
        raise InvalidTokenError("malformed topology token (too short)")
    return raw


def new_secret() -> str:
    """A fresh AES-256 key as base64url, for `CALLMESH_TOPOLOGY_KEYS` (`id:` + this)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")
