"""Stateless nonces: any instance with the secret verifies them; age makes them stale."""

from __future__ import annotations

from shared.sip.auth.nonces import NonceKeeper, NonceState

KEEPER = NonceKeeper(b"secret", ttl=300)


def test_fresh_stale_and_invalid() -> None:
    nonce = KEEPER.mint("example.com", 1000.0)
    assert KEEPER.check(nonce, "example.com", 1000.0) is NonceState.FRESH
    assert KEEPER.check(nonce, "example.com", 1300.0) is NonceState.FRESH
    assert KEEPER.check(nonce, "example.com", 1301.0) is NonceState.STALE
    assert KEEPER.check(nonce, "other.org", 1000.0) is NonceState.INVALID
    assert NonceKeeper(b"other", 300).check(nonce, "example.com", 1000.0) is NonceState.INVALID
    assert KEEPER.check(nonce, "example.com", 900.0) is NonceState.INVALID  # from the future


def test_garbage_and_tampering_are_invalid() -> None:
    nonce = KEEPER.mint("example.com", 1000.0)
    issued, salt, mac = nonce.split(".")
    later = f"{int(issued, 16) + 500:x}.{salt}.{mac}"
    for text in ("", "abc", "a.b.c", later, nonce + "0"):
        assert KEEPER.check(text, "example.com", 1000.0) is NonceState.INVALID


def test_every_challenge_is_unique() -> None:
    assert len({KEEPER.mint("example.com", 1000.0) for _ in range(100)}) == 100


def test_a_nonce_from_up_to_five_seconds_ahead_is_fresh_and_no_more() -> None:
    """Instances' clocks may differ a little: five seconds, not six."""
    assert KEEPER.check(KEEPER.mint("example.com", 1005.0), "example.com", 1000.0) is (
        NonceState.FRESH
    )
    assert KEEPER.check(KEEPER.mint("example.com", 1006.0), "example.com", 1000.0) is (
        NonceState.INVALID
    )
