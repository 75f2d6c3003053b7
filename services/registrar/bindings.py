"""The registrar's writes to the location records (layout in ``services.registrar.layout``).

A REGISTER is decided in Python (``services.registrar.register``) over the
AoR's bindings read under WATCH, then written in one MULTI/EXEC; a concurrent
change of that AoR (another REGISTER, the sweeper, the API) aborts it and it
is decided again on the new state. Expiry is claimed by a Lua script, so of
all the instances sweeping, exactly one removes (and announces) each binding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from services.registrar.layout import aor_key, aor_pattern, expiry_key, expiry_member, text
from services.registrar.model import Binding
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


class ConflictError(Exception):
    """An AoR kept changing under a REGISTER for ``MAX_ATTEMPTS`` tries."""


class BindingStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._claim = store.redis.register_script(_CLAIM_EXPIRED)

    async def change(
        self,
        aor: str,
        now: float,
        decide: Callable[[dict[str, Binding]], T],
        current_of: Callable[[T], Iterable[Binding] | None],
    ) -> T:
        """Run ``decide`` on the AoR's live bindings and store the bindings it leaves.

        ``current_of(result)`` gives the bindings to keep (None: write nothing,
        e.g. a refusal or a query). Bindings already due stay for the sweeper,
        which announces their expiry. Exceptions of ``decide`` propagate.
        """
        key = aor_key(self.store, aor)
        for _ in range(MAX_ATTEMPTS):
            async with self.store.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    stored = await pipe.hgetall(key)
                    live = {
                        binding.contact: binding
                        for binding in map(Binding.model_validate_json, stored.values())
                        if binding.expires_at > now
                    }
                    result = decide(live)
                    current = current_of(result)
                    if current is not None:
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self._write(pipe, aor, key, set(live), list(current))
                        await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise ConflictError(f"bindings of {aor} changed {MAX_ATTEMPTS} times in a row")

    def _write(
        self, pipe: Pipeline, aor: str, key: str, before: set[str], current: list[Binding]
    ) -> None:
        expiry = expiry_key(self.store)
        gone = before - {b.contact for b in current}
        if gone:
            pipe.hdel(key, *gone)
            pipe.zrem(expiry, *(expiry_member(aor, contact) for contact in gone))
        if not current:
            return
        # Defaults (no q, no path...) are left out: most bindings then fit in ~300 bytes.
        pipe.hset(
            key, mapping={b.contact: b.model_dump_json(exclude_defaults=True) for b in current}
        )
        pipe.zadd(expiry, {expiry_member(aor, b.contact): b.expires_at for b in current})
        last = max(b.expires_at for b in current)
        pipe.expireat(key, int(last) + KEY_GRACE)

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
