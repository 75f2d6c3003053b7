"""Shared secrets as operators write them: ``id:base64key[,id:base64key]``, current first.

One format for the edges' key lists (`CALLMESH_TOPOLOGY_KEYS`,
`CALLMESH_RECORD_ROUTE_KEYS`), so rotation is the same for all: deploy
``new,old`` to every edge, wait until what ``old`` sealed or signed is over
(the longest call), then deploy ``new`` alone.  The key id travels in every
token, so a token names the key that checks it.  Parsed when the settings
are read: a bad value stops the process with one line naming the variable.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

KEY_SIZES: Final = frozenset({16, 24, 32})
"""Bytes of a key (AES-128/192/256; the HMAC keys take the same)."""


def parse_key_list(text: str) -> list[tuple[int, bytes]]:
    """[(id, secret)], the current key first; `ValueError` saying what is wrong (never the key)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not 1 <= len(items) <= 2:
        raise ValueError("give the current key, then optionally the previous one")
    keys = [_parse_key(item) for item in items]
    if len(keys) == 2 and keys[0][0] == keys[1][0]:
        raise ValueError("the current and previous keys need different ids")
    return keys


def _parse_key(item: str) -> tuple[int, bytes]:
    key_id, colon, encoded = item.partition(":")
    if not colon or not key_id.isascii() or not key_id.isdigit():
        raise ValueError("a key must be written id:base64key")
    if not 0 <= int(key_id) <= 255:
        raise ValueError("a key id must be 0..255")
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"key {key_id} is not valid base64") from None
    if len(secret) not in KEY_SIZES:
        raise ValueError(f"key {key_id} must be 16, 24 or 32 bytes")
    return int(key_id), secret
