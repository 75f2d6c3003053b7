"""The table's Redis layout: the record every routing instance and edge agrees on.

Keys (under the namespace)::

    routing:version             INCR'd once per stored change set (the table version)
    routing:generation          id of the live rules hash
    routing:rules:<generation>  hash rule id → compact rule JSON
    routing:gateways / routing:carriers / routing:dialplans   hash id → JSON

Why generations: an import writes a whole new rules hash out of sight, then one
Lua script swaps the pointer and bumps the version, so readers see the old table
or the new one, never half. The old hash is left to expire after a grace period
so a reader still scanning it finishes on a consistent table. Change sets are one
Lua script each, which serialises concurrent writers from several instances.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from services.routing.table.changes import Change
from services.routing.table.model import RECORD_TYPES, Kind, Record
from shared.store import Store

ImportMode = Literal["merge", "replace"]

_APPLY = """
local generation = redis.call('GET', KEYS[2]) or '0'
local hashes = {gateway = KEYS[3], carrier = KEYS[4], dialplan = KEYS[5],
                rule = ARGV[1] .. generation}
for i = 2, #ARGV, 4 do
  local hash = hashes[ARGV[i + 1]]
  if ARGV[i] == 'upsert' then
    redis.call('HSET', hash, ARGV[i + 2], ARGV[i + 3])
  else
    redis.call('HDEL', hash, ARGV[i + 2])
  end
end
return redis.call('INCR', KEYS[1])
"""

_SWAP = """
if ARGV[3] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[3] then
  return -1
end
local old = redis.call('GET', KEYS[2]) or '0'
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PERSIST', ARGV[1] .. ARGV[2])
if old ~= ARGV[2] then
  redis.call('EXPIRE', ARGV[1] .. old, ARGV[4])
end
return redis.call('INCR', KEYS[1])
"""

RETIRED_GRACE_SECONDS = 600
"""How long a replaced rules hash stays readable for snapshot loaders still scanning it."""

BUILDING_TTL_SECONDS = 3600
"""A generation being written expires unless swapped in, so a crashed import leaves no litter."""

_CHUNK = 5000
_MERGE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Head:
    """What a reader loads atomically before scanning the rules of ``generation``."""

    version: int
    generation: str
    records: dict[Kind, dict[str, bytes]]


@dataclass(frozen=True, slots=True)
class Imported:
    version: int
    generation: str
    rules: int


class ImportConflictError(Exception):
    """A merge kept losing the race against concurrent changes; the caller may retry."""


class RoutingStore:
    def __init__(self, store: Store) -> None:
        self._redis = store.redis
        self._version = store.key("routing", "version")
        self._generation = store.key("routing", "generation")
        self._rules_prefix = store.key("routing", "rules") + ":"
        self._hashes: dict[Kind, str] = {
            "gateway": store.key("routing", "gateways"),
            "carrier": store.key("routing", "carriers"),
            "dialplan": store.key("routing", "dialplans"),
        }
        self._apply = self._redis.register_script(_APPLY)
        self._swap = self._redis.register_script(_SWAP)

    # -- writes --------------------------------------------------------------

    async def apply(self, changes: Sequence[Change]) -> int:
        """Store the changes as one atomic step; returns the new table version."""
        args: list[str] = [self._rules_prefix]
        for change in changes:
            stored = change.record.stored() if change.record is not None else ""
            args += [change.op, change.kind, change.id, stored]
        keys = [self._version, self._generation, *self._hashes.values()]
        return int(await self._apply(keys=keys, args=args))

    async def import_rules(self, rows: Sequence[tuple[str, Record]], mode: ImportMode) -> Imported:
        """Make ``rows`` the rules (replace) or add them over the current ones (merge).

        A merge copies the live generation server-side and swaps only if no other
        change landed meanwhile (else it retries), so no concurrent change is lost.
        """
        for _ in range(_MERGE_ATTEMPTS):
            base_version, base = await self._head_pointer()
            generation = uuid.uuid4().hex
            key = self._rules_prefix + generation
            if mode == "merge":
                await self._redis.copy(self._rules_prefix + base, key)
            await self._redis.expire(key, BUILDING_TTL_SECONDS)
            await self._write_rows(key, rows)
            expected = str(base_version) if mode == "merge" else ""
            keys = [self._version, self._generation]
            args: list[str | int] = [
                self._rules_prefix,
                generation,
                expected,
                RETIRED_GRACE_SECONDS,
            ]
            version = int(await self._swap(keys=keys, args=args))
            if version >= 0:
                return Imported(version, generation, int(await self._redis.hlen(key)))
            await self._redis.unlink(key)
        raise ImportConflictError("the table kept changing during the merge; try again")

    async def _write_rows(self, key: str, rows: Sequence[tuple[str, Record]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                pipe.hset(
                    key, mapping=cast(Any, {rule_id: rule.stored() for rule_id, rule in chunk})
                )
                if len(pipe) >= 20:
                    await pipe.execute()
            await pipe.execute()

    # -- reads ---------------------------------------------------------------

    async def _head_pointer(self) -> tuple[int, str]:
        version, generation = await self._redis.mget(self._version, self._generation)
        return int(version or 0), _text(generation or b"0")

    async def version(self) -> int:
        return (await self._head_pointer())[0]

    async def _hash(self, kind: Kind) -> str:
        if kind == "rule":
            return self._rules_prefix + (await self._head_pointer())[1]
        return self._hashes[kind]

    async def get(self, kind: Kind, record_id: str) -> Record | None:
        raw = await self._redis.hget(await self._hash(kind), record_id)
        return None if raw is None else RECORD_TYPES[kind].model_validate_json(raw)

    async def existing(self, kind: Kind, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are stored now."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return set()
        found = await self._redis.hmget(await self._hash(kind), wanted)
        return {record_id for record_id, raw in zip(wanted, found, strict=True) if raw}

    async def page(
        self, kind: Kind, cursor: int, count: int
    ) -> tuple[int, list[tuple[str, Record]]]:
        """About ``count`` records from ``cursor`` on (HSCAN); the next cursor is 0 at the end."""
        model = RECORD_TYPES[kind]
        cursor, found = await self._scan(await self._hash(kind), cursor, count)
        items = sorted((_text(key), model.model_validate_json(raw)) for key, raw in found.items())
        return int(cursor), items

    async def head(self) -> Head:
        """Version, rules generation, gateways, carriers and dialplans as of one instant."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.mget(self._version, self._generation)
            for key in self._hashes.values():
                pipe.hgetall(key)
            (version, generation), *hashes = await pipe.execute()
        records = {
            kind: {_text(key): raw for key, raw in found.items()}
            for kind, found in zip(self._hashes, hashes, strict=True)
        }
        return Head(int(version or 0), _text(generation or b"0"), records)

    async def scan_rules(
        self, generation: str, count: int = 10_000
    ) -> AsyncIterator[dict[bytes, bytes]]:
        """The rules of ``generation`` in batches; a rule may come twice, never not at all."""
        key = self._rules_prefix + generation
        cursor = 0
        while True:
            cursor, found = await self._scan(key, cursor, count)
            if found:
                yield found
            if not cursor:
                return

    async def _scan(self, key: str, cursor: int, count: int) -> tuple[int, dict[bytes, bytes]]:
        next_cursor, found = await self._redis.hscan(key, cursor, count=count)
        return int(next_cursor), cast(dict[bytes, bytes], found)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
