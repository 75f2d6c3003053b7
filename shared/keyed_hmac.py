"""HMAC-SHA256 keyed once, for the many short messages the edge signs and checks per call.

Why not `hmac`: its `HMAC` object is Python wrapping OpenSSL's, so a copy, an
update and a digest are three interpreted calls around the C ones, and
`hmac.new` or `hmac.digest` per message pad the key and fetch the digest each
time.  This is RFC 2104 itself on two keyed `hashlib` states: per message two
copies, two updates and two digests, all C, and compiled with the hot path
(1.78 → 0.64 µs per Record-Route token, three per call).  The compiled build goes on in C
(`_keyed_hmac.c`): the two keyed states are 64 bytes, and a message is hashed on copies of
them in one call, where hashlib makes and wipes an OpenSSL context per copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import ModuleType
from typing import Final

_BLOCK: Final = 64
"""SHA-256's block size in bytes: a longer key is hashed first, a shorter one padded."""
_INNER: Final = bytes(b ^ 0x36 for b in range(256))
"""The translation of a padded key into the inner one: each byte XOR 0x36 (ipad)."""
_OUTER: Final = bytes(b ^ 0x5C for b in range(256))
"""Into the outer one: each byte XOR 0x5C (opad)."""


def _accelerator() -> ModuleType | None:
    """The C HMAC (`_keyed_hmac.c`) if this process loaded the compiled build."""
    try:
        from shared import _keyed_hmac
    except ImportError:
        return None
    return _keyed_hmac


_C_HMAC: Final = _accelerator()
_C_DIGEST: Final[Callable[[bytes, bytes], bytes] | None] = (
    None if _C_HMAC is None else _C_HMAC.hmac_digest
)


def sha256_compression() -> str:
    """What the digests run SHA-256 on: "hashlib" (the pure build), or the C module's
    "sha extensions" (the CPU's) or "portable" compression; for the benchmark's report."""
    return "hashlib" if _C_HMAC is None else _C_HMAC.compression()


def use_sha_extensions(on: bool) -> str:
    """The C digest on the CPU's SHA extensions (where it has them) or without; what
    `sha256_compression` says then.  The benchmark times both; nothing in the pure build."""
    if _C_HMAC is not None:
        _C_HMAC.use_sha_extensions(on)
    return sha256_compression()


class KeyedHmac:
    """`hmac.new(key, message, hashlib.sha256).digest()`, keyed once (RFC 2104)."""

    __slots__ = ("_inner", "_outer", "_states")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        if _C_HMAC is not None:  # each build keeps only the states its digest reads
            self._states = _C_HMAC.hmac_states(padded)
            """The inner and outer states for the C digest (`_keyed_hmac.c`)."""
            return
        self._inner = hashlib.sha256(padded.translate(_INNER))
        self._outer = hashlib.sha256(padded.translate(_OUTER))

    def digest(self, message: bytes) -> bytes:
        if _C_DIGEST is not None:
            return _C_DIGEST(self._states, message)
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
