"""Digest nonces any registrar instance can verify without asking the one that issued them.

A nonce is ``{issued:x}.{salt}.{mac}``: the issue time in seconds, 8 random
bytes (so two challenges in the same second differ, and their nonce-counts
are tracked apart), and an HMAC-SHA-256 over time, salt and realm with the
secret all instances share through Redis. Verifying is arithmetic; only
replay protection (the nonce-count) needs the store. Sans-IO: the caller
passes the time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass


class NonceState(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    """Genuine but too old: the client re-sends with the new nonce without asking the user."""
    INVALID = "invalid"
    """Not ours (forged, another realm, another deployment's secret, garbled)."""


@dataclass(frozen=True, slots=True)
class NonceKeeper:
    """Mints and checks nonces with ``secret`` for a lifetime of ``ttl`` seconds."""

    secret: bytes
    ttl: int

    def mint(self, realm: str, now: float) -> str:
        issued = f"{int(now):x}"
        salt = secrets.token_hex(8)
        return f"{issued}.{salt}.{self._mac(issued, salt, realm)}"

    def check(self, nonce: str, realm: str, now: float) -> NonceState:
        parts = nonce.split(".")
        if len(parts) != 3:
            return NonceState.INVALID
        issued, salt, mac = parts
        if not hmac.compare_digest(self._mac(issued, salt, realm), mac):
            return NonceState.INVALID
        age = now - int(issued, 16)
        if age < -5:  # clocks of the instances may differ a little, not more
            return NonceState.INVALID
        return NonceState.FRESH if age <= self.ttl else NonceState.STALE

    def _mac(self, issued: str, salt: str, realm: str) -> str:
        text = f"{issued}.{salt}.{realm}".encode()
        return hmac.new(self.secret, text, hashlib.sha256).hexdigest()[:32]
