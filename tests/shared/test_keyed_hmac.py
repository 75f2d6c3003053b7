"""`KeyedHmac` is HMAC-SHA256 exactly, whatever the key's length against SHA-256's block."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.keyed_hmac import KeyedHmac


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_a_keyed_hmac_gives_the_standard_digest_again_and_again(key_length: int) -> None:
    key = bytes(i * 7 % 256 for i in range(key_length))
    keyed = KeyedHmac(key)
    for message in (b"", b"call-1@example.com\nudp 192.0.2.1 5060 ", bytes(1000)):
        assert keyed.digest(message) == hmac.new(key, message, hashlib.sha256).digest()
    assert keyed.digest(b"x") == keyed.digest(b"x")  # its keyed states are copied, not used up
