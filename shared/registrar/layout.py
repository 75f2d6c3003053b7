"""Where the registrar keeps things in Redis; readers (edges) and writers share these names.

Per address-of-record, one hash ``registrar:aor:{aor}`` maps each contact URI
to its binding (JSON), so a lookup is one HGETALL. One sorted set
``registrar:expiry`` scores ``"{aor} {contact}"`` (neither holds a space) by
expiry time, which is what the sweeper walks. A subscriber is a hash
``registrar:subscriber:{user}@{domain}`` (HA1s, enabled flag, extra fields),
listed in the lexically sorted set ``registrar:subscribers``. The local
domains are the set ``registrar:domains``, with a subscriber count per domain
in the hash ``registrar:domain-counts``.
"""

from __future__ import annotations

from typing import Final

from shared.store import Store

MEMBER_SEPARATOR: Final = " "


def text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; the declared type allows str)."""
    return value if isinstance(value, str) else value.decode()


def aor_key(store: Store, aor: str) -> str:
    return store.key("registrar", "aor", aor)


def aor_pattern(store: Store) -> str:
    return store.key("registrar", "aor", "*")


def expiry_key(store: Store) -> str:
    return store.key("registrar", "expiry")


def expiry_member(aor: str, contact: str) -> str:
    return f"{aor}{MEMBER_SEPARATOR}{contact}"


def subscriber_key(store: Store, identity: str) -> str:
    return store.key("registrar", "subscriber", identity)


def subscribers_key(store: Store) -> str:
    return store.key("registrar", "subscribers")


def domains_key(store: Store) -> str:
    return store.key("registrar", "domains")


def domain_counts_key(store: Store) -> str:
    return store.key("registrar", "domain-counts")


def nonce_secret_key(store: Store) -> str:
    return store.key("registrar", "nonce-secret")


def nonce_count_key(store: Store, nonce: str) -> str:
    return store.key("registrar", "nc", nonce)
