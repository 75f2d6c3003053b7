"""Subscribers in Redis: HA1s (MD5, SHA-256; RFC 8760), never the password.

The digest realm is the subscriber's domain, so HA1 = H(user:domain:password)
is computed once when the password is set. Creating a domain's first
subscriber or deleting its last changes the set of local domains; the scripts
below do that bookkeeping atomically and say when it happened, so the caller
can announce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared.registrar.layout import (
    domain_counts_key,
    domains_key,
    subscriber_key,
    subscribers_key,
    text,
)
from shared.registrar.location import identity
from shared.sip.auth.digest import compute_ha1
from shared.store import Store

# KEYS: subscriber hash, index, domain counts, domains.
# ARGV: id, domain, enabled, data, and [md5 HA1, sha256 HA1] when the password is set.
# Returns {created, domain_added}, or {-1, 0} when a new subscriber comes without a password.
_PUT = """
local created = redis.call('EXISTS', KEYS[1]) == 0
if created and #ARGV < 6 then return {-1, 0} end
redis.call('HSET', KEYS[1], 'enabled', ARGV[3], 'data', ARGV[4])
if #ARGV == 6 then redis.call('HSET', KEYS[1], 'ha1_md5', ARGV[5], 'ha1_sha256', ARGV[6]) end
if not created then return {0, 0} end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
  redis.call('SADD', KEYS[4], ARGV[2])
  return {1, 1}
end
return {1, 0}
"""

# Same KEYS; ARGV: id, domain. Returns {existed, domain_removed}.
_DELETE = """
if redis.call('DEL', KEYS[1]) == 0 then return {0, 0} end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HINCRBY', KEYS[3], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[2])
  return {1, 1}
end
return {1, 0}
"""


class PasswordRequiredError(Exception):
    """A new subscriber needs a password (an existing one keeps its HA1s without one)."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    username: str
    domain: str
    enabled: bool
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return identity(self.username, self.domain)

    def public(self) -> dict[str, Any]:
        """What the API shows: never an HA1."""
        fields = {"id": self.id, "username": self.username, "domain": self.domain}
        return {**self.data, **fields, "enabled": self.enabled}


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a write did; ``domain_changed``: it added or removed a local domain (to announce)."""

    happened: bool
    domain_changed: bool


class SubscriberStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._put = store.redis.register_script(_PUT)
        self._delete = store.redis.register_script(_DELETE)

    def _keys(self, ident: str) -> list[str]:
        store = self.store
        return [
            subscriber_key(store, ident),
            subscribers_key(store),
            domain_counts_key(store),
            domains_key(store),
        ]

    async def put(self, subscriber: Subscriber, password: str | None) -> WriteOutcome:
        """Create or replace; ``happened`` means created. Raises :class:`PasswordRequiredError`."""
        args: list[str | bytes] = [
            subscriber.id,
            subscriber.domain,
            "1" if subscriber.enabled else "0",
            orjson.dumps(subscriber.data),
        ]
        if password is not None:
            user, realm = subscriber.username, subscriber.domain
            args += [
                compute_ha1(user, realm, password),
                compute_ha1(user, realm, password, "SHA-256"),
            ]
        created, domain_added = await self.store.durable(self._put, self._keys(subscriber.id), args)
        if created == -1:
            raise PasswordRequiredError(
                f"subscriber {subscriber.id} does not exist: a password is required"
            )
        return WriteOutcome(bool(created), bool(domain_added))

    async def delete(self, username: str, domain: str) -> WriteOutcome:
        ident = identity(username, domain)
        existed, domain_removed = await self.store.durable(
            self._delete, self._keys(ident), [ident, domain]
        )
        return WriteOutcome(bool(existed), bool(domain_removed))

    async def get(self, username: str, domain: str) -> Subscriber | None:
        enabled, data = await self.store.redis.hmget(
            subscriber_key(self.store, identity(username, domain)), ["enabled", "data"]
        )
        if enabled is None:
            return None
        return Subscriber(username, domain, enabled == b"1", orjson.loads(data or b"{}"))

    async def domains_of(self, username: str) -> list[str]:
        """The domains having a subscriber ``username`` (for ids given without a domain)."""
        prefix = f"{username}@".encode()
        found = await self.store.redis.zrangebylex(
            subscribers_key(self.store), b"[" + prefix, b"[" + prefix + b"\xff"
        )
        return [text(member)[len(prefix) :] for member in found]

    async def page(self, after: str, limit: int) -> list[Subscriber]:
        """Up to ``limit`` subscribers in id order, starting after id ``after`` ("" first)."""
        start = f"({after}" if after else "-"
        ids = await self.store.redis.zrangebylex(subscribers_key(self.store), start, "+", 0, limit)
        pipe = self.store.redis.pipeline(transaction=False)
        for raw in ids:
            pipe.hmget(subscriber_key(self.store, text(raw)), ["enabled", "data"])
        found = []
        for raw, (enabled, data) in zip(ids, await pipe.execute(), strict=True):
            if enabled is not None:
                user, _, domain = text(raw).rpartition("@")
                found.append(Subscriber(user, domain, enabled == b"1", orjson.loads(data or b"{}")))
        return found
