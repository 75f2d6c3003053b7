"""The table's Redis layout: the record every routing instance and edge agrees on.

Keys (under the namespace)::

    routing:version             INCR'd once per stored change set (the table version)
    routing:generation          id of the live rules hash
    routing:rules:<generation>  hash rule id → compact rule JSON
    routing:snapshot:<generation>  list of packed chunks of the rules as imported
    routing:changed:<generation>   set of rule ids changed since (single changes)
    routing:gateways / routing:carriers / routing:dialplans / routing:manipulations /
    routing:peers / routing:fraud_rules
                                hash id → JSON

Why generations: an import writes a whole new rules hash out of sight, then one
Lua script swaps the pointer and bumps the version, so readers see the old table
or the new one, never half. The old hash is left to expire after a grace period
so a reader still scanning it finishes on a consistent table. Change sets are one
Lua script each, which serialises concurrent writers from several instances.

Why snapshots: an edge must load a million rules fast. An import writes the
rules packed (:mod:`~shared.routing_table.packed`) next to the hash, and every
later single change of a rule records its id in the generation's changed set, so
a reader gets the whole table as a few big immutable chunks plus the (few)
changed rules read atomically with the version: snapshot + changed = the hash.
A merge copies the base's chunks and changed set and appends its own chunk;
once that has made the snapshot more than about twice the table (every merge
of a whole deck adds a deck; single changes add ids to the changed set), the
merge rewrites the new generation's snapshot from it before the swap: each rule
once, changed rules packed, the changed set empty. An edge thus never decodes
much more than the table, however many merges came before.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from shared.routing_table.changes import Change
from shared.routing_table.model import RECORD_TYPES, Kind, Record, Rule
from shared.routing_table.packed import (
    RULES_PER_CHUNK,
    pack_lines,
    pack_rules,
    packed_line,
    packed_lines,
)
from shared.store import Store

ImportMode = Literal["merge", "replace"]

_APPLY = """
local once = ARGV[3] ~= ''
if once then
  local done = redis.call('GET', KEYS[#KEYS])
  if done then
    return {tonumber(done), 0}
  end
end
local generation = redis.call('GET', KEYS[2]) or '0'
local hashes = {gateway = KEYS[3], carrier = KEYS[4], dialplan = KEYS[5],
                manipulation = KEYS[6], peer = KEYS[7], fraud_rule = KEYS[8],
                rule = ARGV[1] .. generation}
local changed = ARGV[2] .. generation
for i = 4, #ARGV, 4 do
  local hash = hashes[ARGV[i + 1]]
  if ARGV[i] == 'upsert' then
    redis.call('HSET', hash, ARGV[i + 2], ARGV[i + 3])
  else
    redis.call('HDEL', hash, ARGV[i + 2])
  end
  if ARGV[i + 1] == 'rule' then
    redis.call('SADD', changed, ARGV[i + 2])
  end
end
local version = redis.call('INCR', KEYS[1])
if once then
  redis.call('SET', KEYS[#KEYS], version, 'EX', ARGV[3])
end
return {version, 1}
"""

_SWAP = """
if ARGV[2] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[2] then
  return -1
end
local old = redis.call('GET', KEYS[2]) or '0'
redis.call('SET', KEYS[2], ARGV[1])
for i = 4, #ARGV do
  redis.call('PERSIST', ARGV[i] .. ARGV[1])
  if old ~= ARGV[1] then
    redis.call('EXPIRE', ARGV[i] .. old, ARGV[3])
  end
end
return redis.call('INCR', KEYS[1])
"""

_SNAPSHOT = """
local generation = redis.call('GET', KEYS[2]) or '0'
local ids = redis.call('SMEMBERS', ARGV[3] .. generation)
local values = {}
for i = 1, #ids, 1000 do
  local found = redis.call('HMGET', ARGV[1] .. generation, unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #found do
    values[#values + 1] = found[j]
  end
end
return {redis.call('GET', KEYS[1]) or '0', generation, redis.call('LLEN', ARGV[2] .. generation),
        ids, values, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6]),
        redis.call('HGETALL', KEYS[7]), redis.call('HGETALL', KEYS[8])}
"""

COMMAND_ID_TTL = 7 * 86400
"""Seconds a queued command's id is remembered: far beyond any redelivery or resend."""

RETIRED_GRACE_SECONDS = 600
"""How long a replaced rules hash stays readable for snapshot loaders still scanning it."""

BUILDING_TTL_SECONDS = 3600
"""A generation being written expires unless swapped in, so a crashed import leaves no litter."""

_CHUNK = 5000
_MERGE_ATTEMPTS = 3
_CHUNKS_PER_READ = 4


@dataclass(frozen=True, slots=True)
class Head:
    """What a reader loads atomically before scanning the rules of ``generation``."""

    version: int
    generation: str
    records: dict[Kind, dict[str, bytes]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole table as of ``head.version``: packed ``chunks`` (later ones win for an id),
    overridden by ``changed`` (rule id → stored JSON, or None when deleted)."""

    head: Head
    chunks: list[bytes]
    changed: dict[str, bytes | None]


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
        self._durable = store.durable
        self._commands_prefix = store.key("routing", "command") + ":"
        self._version = store.key("routing", "version")
        self._generation = store.key("routing", "generation")
        self._rules_prefix = store.key("routing", "rules") + ":"
        self._snapshot_prefix = store.key("routing", "snapshot") + ":"
        self._changed_prefix = store.key("routing", "changed") + ":"
        self._hashes: dict[Kind, str] = {
            "gateway": store.key("routing", "gateways"),
            "carrier": store.key("routing", "carriers"),
            "dialplan": store.key("routing", "dialplans"),
            "manipulation": store.key("routing", "manipulations"),
            "peer": store.key("routing", "peers"),
            "fraud_rule": store.key("routing", "fraud_rules"),
        }
        self._apply = self._redis.register_script(_APPLY)
        self._swap = self._redis.register_script(_SWAP)
        self._snapshot = self._redis.register_script(_SNAPSHOT)

    # -- writes --------------------------------------------------------------

    async def apply(
        self, changes: Sequence[Change], *, command_id: str | None = None
    ) -> tuple[int, bool]:
        """Store the changes as one atomic step: the new table version, and True.

        With ``command_id`` (a queued command's message id) a command stored before
        (a redelivery after a lost acknowledgement, a sender's resend after a lost
        confirm) changes nothing: its version then, and False. The ids are kept
        ``COMMAND_ID_TTL`` seconds.
        """
        once = COMMAND_ID_TTL if command_id is not None else ""  # the id's key comes last
        args: list[str | int] = [self._rules_prefix, self._changed_prefix, once]
        for change in changes:
            stored = change.record.stored() if change.record is not None else ""
            args += [change.op, change.kind, change.id, stored]
        keys = [self._version, self._generation, *self._hashes.values()]
        if command_id is not None:
            keys.append(self._commands_prefix + command_id)
        version, fresh = await self._durable(self._apply, keys, args)
        return int(version), bool(fresh)

    async def import_rules(self, rows: Sequence[tuple[str, Rule]], mode: ImportMode) -> Imported:
        """Make ``rows`` the rules (replace) or add them over the current ones (merge).

        A merge copies the live generation server-side and swaps only if no other
        change landed meanwhile (else it retries), so no concurrent change is lost.
        """
        for _ in range(_MERGE_ATTEMPTS):
            base_version, base = await self._head_pointer()
            generation = uuid.uuid4().hex
            prefixes = (self._rules_prefix, self._snapshot_prefix, self._changed_prefix)
            if mode == "merge":
                for prefix in prefixes:
                    await self._redis.copy(prefix + base, prefix + generation)
            await self._write_rows(generation, rows)
            if mode == "merge":
                await self._compact(generation)
            expected = str(base_version) if mode == "merge" else ""
            keys = [self._version, self._generation]
            args: list[str | int] = [
                generation,
                expected,
                RETIRED_GRACE_SECONDS,
                *prefixes,
            ]
            version = int(await self._swap(keys=keys, args=args))
            if version >= 0:
                rules = await self._redis.hlen(self._rules_prefix + generation)
                return Imported(version, generation, int(rules))
            await self._redis.unlink(*(prefix + generation for prefix in prefixes))
        raise ImportConflictError("the table kept changing during the merge; try again")

    async def _write_rows(self, generation: str, rows: Sequence[tuple[str, Rule]]) -> None:
        """The rows into the generation's hash and, packed, onto its snapshot; both expire
        unless the swap makes the generation live."""
        key = self._rules_prefix + generation
        snapshot = self._snapshot_prefix + generation
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                pipe.hset(
                    key, mapping=cast(Any, {rule_id: rule.stored() for rule_id, rule in chunk})
                )
                if len(pipe) >= 20:
                    await pipe.execute()
            for start in range(0, len(rows), RULES_PER_CHUNK):
                pipe.rpush(snapshot, pack_rules(rows[start : start + RULES_PER_CHUNK]))
                await pipe.execute()
            for building in (key, snapshot, self._changed_prefix + generation):
                pipe.expire(building, BUILDING_TTL_SECONDS)
            await pipe.execute()

    async def _compact(self, generation: str) -> None:
        """Rewrite the (not yet live) generation's snapshot from itself when it has grown
        past about twice the table: more than twice the chunks the rules need (plus
        two), or more changed rules than a quarter of the table (and than a chunk)."""
        key, snapshot, changed = (
            prefix + generation
            for prefix in (self._rules_prefix, self._snapshot_prefix, self._changed_prefix)
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hlen(key)
            pipe.llen(snapshot)
            pipe.scard(changed)
            rules, chunks, edits = (int(found) for found in await pipe.execute())
        needed = math.ceil(rules / RULES_PER_CHUNK)
        if chunks <= 2 * needed + 2 and edits <= max(RULES_PER_CHUNK, rules // 4):
            return
        lines: dict[str, str] = {}
        for start in range(0, chunks, _CHUNKS_PER_READ):
            read = await self._redis.lrange(snapshot, start, start + _CHUNKS_PER_READ - 1)
            for chunk in cast(list[bytes], read):
                lines.update(packed_lines(chunk))
        ids = [_text(rule_id) for rule_id in await self._redis.smembers(changed)]
        for start in range(0, len(ids), _CHUNK):
            batch = ids[start : start + _CHUNK]
            found = await self._redis.hmget(key, batch)
            for rule_id, raw in zip(batch, found, strict=True):
                if raw:  # changed since it was packed: packed as it is now
                    lines[rule_id] = packed_line(rule_id, Rule.model_validate_json(raw))
                else:  # deleted
                    lines.pop(rule_id, None)
        packed = list(lines.values())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(snapshot, changed)
            for start in range(0, len(packed), RULES_PER_CHUNK):
                pipe.rpush(snapshot, pack_lines(packed[start : start + RULES_PER_CHUNK]))
                await pipe.execute()
            pipe.expire(snapshot, BUILDING_TTL_SECONDS)
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

    async def snapshot(self) -> Snapshot:
        """The whole table at one version, in few round trips (see :class:`Snapshot`)."""
        keys = [self._version, self._generation, *self._hashes.values()]
        args = [self._rules_prefix, self._snapshot_prefix, self._changed_prefix]
        reply = await self._snapshot(keys=keys, args=args)
        version, generation, chunk_count, ids, values, *hashes = reply
        records = {
            kind: {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
            for kind, flat in zip(self._hashes, hashes, strict=True)
        }
        head = Head(int(version), _text(generation), records)
        # The chunks of a live generation never change, so reading them in several
        # round trips after the atomic part above is still reading version ``version``.
        key = self._snapshot_prefix + head.generation
        chunks: list[bytes] = []
        for start in range(0, int(chunk_count), _CHUNKS_PER_READ):
            found = await self._redis.lrange(key, start, start + _CHUNKS_PER_READ - 1)
            chunks += cast(list[bytes], found)
        changed = {_text(rule_id): raw for rule_id, raw in zip(ids, values, strict=True)}
        return Snapshot(head, chunks, changed)

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
