"""Read-only views of the registrar's records, for the edges to use straight against Redis.

No registrar round trip on the call path: an edge resolves a subscriber's
contacts, the local domains and HA1s (for its 407 challenges) with one Redis
command each. The registrar service is the only writer of these records; the
nonce secret is created by whichever process (registrar or edge) needs it first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

from pydantic import ValidationError

from shared.registrar.layout import (
    aor_key,
    aor_pattern,
    domains_key,
    nonce_secret_key,
    subscriber_key,
    text,
)
from shared.registrar.model import Binding, Location, by_priority
from shared.store import Store

HA1_FIELDS = {"MD5": "ha1_md5", "SHA-256": "ha1_sha256"}
"""The digest algorithms a subscriber has an HA1 for, and the hash field holding it."""


async def lookup_bindings(store: Store, aor: str, now: float | None = None) -> list[Binding]:
    """The unexpired bindings of canonical ``aor`` (see ``model.aor_of``), highest q first."""
    now = time.time() if now is None else now
    raw = await store.redis.hvals(aor_key(store, aor))
    found = [Binding.model_validate_json(value) for value in raw]
    return by_priority([binding for binding in found if binding.expires_at > now])


async def bindings_mentioning(
    store: Store, mention: str, page: int = 200, now: float | None = None
) -> AsyncIterator[list[Location]]:
    """The unexpired bindings whose record contains `mention` (an edge's instance name), a page
    at a time: one SCAN step over the AoR keys and one pipelined HVALS per page.

    For an edge starting up, which must find the bindings it holds among every
    edge's without an index: the records of other edges are skipped by a
    substring test before any JSON is parsed, and the caller gets the event loop
    back between pages (SIP keeps flowing while 100,000 bindings are read).
    """
    now = time.time() if now is None else now
    needle = mention.encode()
    cursor = 0
    while True:
        cursor, keys = await store.redis.scan(cursor, match=aor_pattern(store), count=page)
        if keys:
            async with store.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hvals(key)
                replies = await pipe.execute()
            found = (
                _location(value)
                for values in replies
                for value in values
                if needle in (value if isinstance(value, bytes) else value.encode())
            )
            yield [where for where in found if where is not None and where.expires_at > now]
        if not cursor:
            return


def _location(value: bytes | str) -> Location | None:
    try:
        return Location.model_validate_json(value)
    except ValidationError:
        return None  # not the registrar's record: the others still count


async def is_local_domain(store: Store, domain: str) -> bool:
    """Whether ``domain`` has subscribers, i.e. calls to it are for the registrar's bindings."""
    return bool(await store.redis.sismember(domains_key(store), domain.lower()))


async def subscriber_exists(store: Store, user: str, domain: str) -> bool:
    """Whether ``user@domain`` is a subscriber (enabled or not): 480 rather than 404."""
    return bool(await store.redis.exists(subscriber_key(store, identity(user, domain))))


async def subscriber_ha1(store: Store, user: str, domain: str, algorithm: str) -> str | None:
    """The HA1 of an enabled subscriber for ``algorithm`` (``MD5`` or ``SHA-256``), else None.

    The digest realm of a subscriber is its domain. ``-sess`` variants use the
    plain HA1 (``shared.sip.auth.digest`` derives the session one).
    """
    source = ha1_source(store, user, domain, algorithm)
    if source is None:
        return None
    key, field = source
    return ha1_of(await store.redis.hmget(key, [field, "enabled"]))


def ha1_source(store: Store, user: str, domain: str, algorithm: str) -> tuple[str, str] | None:
    """Where the HA1 for ``algorithm`` is: the subscriber's key and field (None: no such
    algorithm), to read with ``HMGET key field enabled`` (alone or in a pipeline)."""
    field = HA1_FIELDS.get(algorithm.upper().removesuffix("-SESS"))
    if field is None:
        return None
    return subscriber_key(store, identity(user, domain)), field


def ha1_of(reply: list[bytes | str | None]) -> str | None:
    """The HA1 from the reply to ``HMGET key field enabled``, if the subscriber is enabled."""
    ha1, enabled = reply
    if ha1 is None or enabled != b"1":
        return None
    return text(ha1)


def identity(user: str, domain: str) -> str:
    """A subscriber's id: ``user@domain``, the domain lower-cased (hosts are case-blind)."""
    return f"{user}@{domain.lower()}"


async def shared_secret(store: Store) -> bytes:
    """The deployment's secret for nonces (and the edges' flow tokens): created once, shared."""
    key = nonce_secret_key(store)
    await store.redis.set(key, secrets.token_hex(32), nx=True)
    value = await store.redis.get(key)
    if value is None:
        raise RuntimeError("the nonce secret vanished from Redis")
    return text(value).encode()
