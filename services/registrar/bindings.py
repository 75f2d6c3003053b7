"""The registrar's writes to the location records (layout in ``shared.registrar.layout``).

A REGISTER is decided in Python (``services.registrar.register``) over the
AoR's hash as read (a :class:`AorSnapshot`), then written by one Lua script that
first checks the hash is still exactly as read and, for a REGISTER, claims its
digest nonce-count: two round trips in all, against five with WATCH/MULTI and a
separate claim.  A concurrent change of that AoR (another REGISTER, the
sweeper, the API) makes the script refuse, and it is decided again.  Expiry
is claimed by a Lua script, so of all the instances sweeping, exactly one
removes (and announces) each binding.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from shared.registrar.layout import aor_key, aor_pattern, expiry_key, expiry_member, text
from shared.registrar.model import Binding
from shared.store import Store

T = TypeVar("T")

KEY_GRACE = 60
"""Seconds an AoR hash outlives its last binding in Redis, in case no sweeper runs."""
MAX_ATTEMPTS = 20

# KEYS[1]: the expiry set. ARGV: now, batch size, the AoR key prefix.
# Removes up to ARGV[2] due bindings, returns their stored JSON.
_CLAIM_EXPIRED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local cut = string.find(member, ' ', 1, true)
  local key = ARGV[3] .. string.sub(member, 1, cut - 1)
  local contact = string.sub(member, cut + 1)
  local value = redis.call('HGET', key, contact)
  if value then
    redis.call('HDEL', key, contact)
    table.insert(out, value)
  end
end
return out
"""


# KEYS: the AoR hash, the expiry set, [the nonce-count key]. ARGV: the AoR's expiry-member
# prefix, then the hash as
# read (count, field/value pairs), then the nonce-count and its seconds to keep (when a third
# key is given), then the contacts to drop (count, contacts), then the bindings to store
# (count, contact/JSON/expiry triples) and the hash's EXPIREAT.  Returns -1 when the hash is
# no longer as read (decide again), 0 when the nonce-count was used before (a replay), 1 done.
_COMMIT = """
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return -1 end
  i = i + 2
end
if redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[2]) then return -1 end
if #KEYS == 3 then
  local seen = redis.call('GET', KEYS[3])
  if seen and tonumber(seen) >= tonumber(ARGV[i]) then return 0 end
  redis.call('SET', KEYS[3], ARGV[i], 'EX', tonumber(ARGV[i + 1]))
  i = i + 2
end
local prefix = ARGV[1]
local gone = tonumber(ARGV[i])
i = i + 1
for _ = 1, gone do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], prefix .. ARGV[i])
  i = i + 1
end
local kept = tonumber(ARGV[i])
i = i + 1
for _ = 1, kept do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], ARGV[i + 2], prefix .. ARGV[i])
  i = i + 3
end
if kept > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[i]) end
return 1
"""


class ConflictError(Exception):
    """An AoR kept changing under a REGISTER for ``MAX_ATTEMPTS`` tries."""


class Commit(enum.Enum):
    DONE = 1
    CONFLICT = -1
    """The AoR changed since it was read: decide again on a fresh snapshot."""
    REPLAYED = 0
    """The nonce-count was used before: nothing written."""


@dataclass(frozen=True, slots=True)
class AorSnapshot:
    """An AoR's hash exactly as read; a commit goes through only if it is still so."""

    aor: str
    stored: dict[bytes | str, bytes | str]

    def live(self, now: float) -> dict[str, Binding]:
        """The bindings not yet due (due ones stay for the sweeper, which announces them)."""
        found = (Binding.model_validate_json(value) for value in self.stored.values())
        return {binding.contact: binding for binding in found if binding.expires_at > now}


@dataclass(frozen=True, slots=True)
class NonceClaim:
    """Claim nonce-count ``count`` of the nonce at ``key`` with the write (replay protection)."""

    key: str
    count: int
    ttl: int


class BindingStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._claim = store.redis.register_script(_CLAIM_EXPIRED)
        self._commit = store.redis.register_script(_COMMIT)

    def key(self, aor: str) -> str:
        return aor_key(self.store, aor)

    async def snapshot(self, aor: str) -> AorSnapshot:
        return AorSnapshot(aor, await self.store.redis.hgetall(self.key(aor)))

    async def commit(
        self,
        snapshot: AorSnapshot,
        before: Collection[str],
        current: list[Binding],
        claim: NonceClaim | None = None,
    ) -> Commit:
        """Replace the live bindings ``before`` (contacts) of ``snapshot`` by ``current``.

        Atomic, and only if the AoR is still as in ``snapshot``; due bindings
        not in ``before`` are left for the sweeper to claim and announce.
        """
        aor = snapshot.aor
        keys = [self.key(aor), expiry_key(self.store)]
        args: list[bytes | str | float] = [expiry_member(aor, ""), len(snapshot.stored)]
        for pair in snapshot.stored.items():
            args.extend(pair)
        if claim is not None:
            keys.append(claim.key)
            args += [claim.count, claim.ttl]
        kept = {b.contact for b in current}
        gone = [contact for contact in before if contact not in kept]
        args += [len(gone), *gone, len(current)]
        for binding in current:
            # Defaults (no q, no path...) are left out: most bindings then fit in ~300 bytes.
            args += [
                binding.contact,
                binding.model_dump_json(exclude_defaults=True),
                binding.expires_at,
            ]
        if current:
            args.append(int(max(b.expires_at for b in current)) + KEY_GRACE)
        return Commit(int(await self.store.durable(self._commit, keys, args)))

    async def change(
        self,
        aor: str,
        now: float,
        decide: Callable[[dict[str, Binding]], T],
        current_of: Callable[[T], Iterable[Binding] | None],
    ) -> T:
        """Run ``decide`` on the AoR's live bindings and store the bindings it leaves.

        ``current_of(result)`` gives the bindings to keep (None: write nothing,
        e.g. a refusal or a query). Exceptions of ``decide`` propagate.
        """
        for _ in range(MAX_ATTEMPTS):
            snapshot = await self.snapshot(aor)
            live = snapshot.live(now)
            result = decide(live)
            current = current_of(result)
            if current is None or await self.commit(snapshot, live, list(current)) is Commit.DONE:
                return result
        raise ConflictError(f"bindings of {aor} changed {MAX_ATTEMPTS} times in a row")

    async def claim_expired(self, now: float, batch: int = 500) -> list[Binding]:
        """Remove up to ``batch`` bindings due at ``now``; each is returned to one caller only."""
        prefix = aor_key(self.store, "")
        raw = await self._claim(keys=[expiry_key(self.store)], args=[now, batch, prefix])
        return [Binding.model_validate_json(value) for value in raw]

    async def aors_page(self, cursor: int, limit: int) -> tuple[int, list[str]]:
        """About ``limit`` AoRs with bindings, and the SCAN cursor of the next page (0: done).

        SCAN walks the whole Redis keyspace, which other namespaces share, so
        it goes on until it found ``limit`` AoRs or reached the end: no empty
        pages in the middle of a listing.
        """
        prefix = aor_key(self.store, "")
        found: list[str] = []
        while True:
            cursor, keys = await self.store.redis.scan(
                cursor, match=aor_pattern(self.store), count=max(limit, 1000)
            )
            found.extend(text(key).removeprefix(prefix) for key in keys)
            if not cursor or len(found) >= limit:
                return int(cursor), sorted(found)
