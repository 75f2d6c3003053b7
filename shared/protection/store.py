"""The protection state in the store: failure counters, blocks with their expiry, the allow-list.

Keys (under the namespace): ``protection:failures:{account|source}:{key}``
(a counter living ``window`` seconds from its first failure),
``protection:blocks`` (a sorted set, member ``{kind}|{key}``, score the
wall time the block ends) with ``protection:blocks:detail`` (member → JSON
reason and edge), ``protection:allowlist`` (id → JSON entry).  Counting
and blocking is one Lua script, so two edges counting the same account at
once cannot both miss the threshold; expired blocks are removed by every
write, and the set is capped, so nothing grows without bound.  The
embedded store (fakeredis) runs the same script.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.protection.failures import AuthFailureSettings, FailureCounts
from shared.protection.flood_counts import news_key, source_keys
from shared.store import Store

BlockKind = Literal["account", "source", "flood", "scanner"]
BLOCK_KINDS: Final[tuple[BlockKind, ...]] = ("account", "source", "flood", "scanner")
AUTH_KINDS: Final[tuple[BlockKind, ...]] = ("account", "source")
MAX_STORED_BLOCKS: Final = 100_000
PRUNE_BATCH: Final = 500

_PRUNE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, PRUNE_BATCH)
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
local function block(member, until_, detail)
  local current = redis.call('ZSCORE', KEYS[1], member)
  if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[1], until_, member)
  redis.call('HSET', KEYS[2], member, detail)
  local over = redis.call('ZCARD', KEYS[1]) - MAX_STORED_BLOCKS
  if over > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[1], over)
    for i = 1, #popped, 2 do redis.call('HDEL', KEYS[2], popped[i]) end
  end
  return 1
end
""".replace("PRUNE_BATCH", str(PRUNE_BATCH)).replace("MAX_STORED_BLOCKS", str(MAX_STORED_BLOCKS))

_RECORD_FAILURE = (
    _PRUNE
    + """
-- KEYS[3], KEYS[4]: the account's and the source's counters (the source's empty: not counted)
-- ARGV: now, window, account limit, source limit, block until, account member,
--       source member, detail
local function count(key)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[2]) end
  return n
end
local a = count(KEYS[3])
local s, ab, sb = 0, 0, 0
if KEYS[4] ~= '' then s = count(KEYS[4]) end
if a >= tonumber(ARGV[3]) then
  ab = block(ARGV[6], ARGV[5], ARGV[8])
  if ab == 1 then redis.call('DEL', KEYS[3]) end
end
if KEYS[4] ~= '' and s >= tonumber(ARGV[4]) then
  sb = block(ARGV[7], ARGV[5], ARGV[8])
  if sb == 1 then redis.call('DEL', KEYS[4]) end
end
return {a, s, ab, sb}
"""
)

_ADD_BLOCK = (
    _PRUNE
    + """
-- ARGV: now, until, member, detail
return block(ARGV[3], ARGV[2], ARGV[4])
"""
)


class BlockRecord(BaseModel):
    """One block as the API lists it."""

    model_config = ConfigDict(frozen=True)

    kind: BlockKind
    key: str
    until: float
    reason: str = ""
    edge: str = ""


class AllowEntry(BaseModel):
    """One allow-list entry: a network never flagged as a scanner nor flood- or source-blocked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=200)

    @field_validator("network")
    @classmethod
    def _cidr(cls, text: str) -> str:
        try:
            return str(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError("not an IP network, e.g. 198.51.100.0/24 or 2001:db8::/32") from None


class ProtectionStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        redis = store.redis
        self._blocks = store.key("protection", "blocks")
        self._detail = store.key("protection", "blocks", "detail")
        self._allow = store.key("protection", "allowlist")
        self._record = redis.register_script(_RECORD_FAILURE)
        self._add = redis.register_script(_ADD_BLOCK)

    def _counter(self, kind: BlockKind, key: str) -> str:
        return self.store.key("protection", "failures", kind, key)

    async def record_failure(
        self,
        account: str,
        source: str | None,
        settings: AuthFailureSettings,
        *,
        now: float,
        edge: str,
    ) -> FailureCounts:
        """Count one failure of `account` (and of `source`, unless None: allow-listed)."""
        source_counter = "" if source is None else self._counter("source", source)
        keys = [self._blocks, self._detail, self._counter("account", account), source_counter]
        args: list[str | float] = [
            now,
            settings.window,
            settings.block_after,
            settings.source_block_after,
            now + settings.block_time,
            f"account|{account}",
            f"source|{source}",
            _detail("authentication failures", edge, now),
        ]
        a, s, account_blocked, source_blocked = await self._record(keys=keys, args=args)
        return FailureCounts(int(a), int(s), bool(account_blocked), bool(source_blocked))

    async def add_block(
        self, kind: BlockKind, key: str, until: float, *, reason: str, edge: str, now: float
    ) -> bool:
        """Record a block (a flood, a scanner); False when one was running already."""
        args: list[str | float] = [now, until, f"{kind}|{key}", _detail(reason, edge, now)]
        added = await self._add(keys=[self._blocks, self._detail], args=args)
        return bool(added)

    async def blocks(
        self, now: float, kinds: tuple[BlockKind, ...] = BLOCK_KINDS
    ) -> list[BlockRecord]:
        """The blocks running at `now` (wall time), oldest end first."""
        redis = self.store.redis
        found: list[Any] = await redis.zrangebyscore(
            self._blocks, f"({now}", "+inf", withscores=True
        )
        members = [member for member, _ in found]
        details: list[Any] = await redis.hmget(self._detail, members) if members else []
        records = []
        for (member, until), detail in zip(found, details, strict=True):
            kind, _, key = member.decode().partition("|")
            if kind not in kinds:
                continue
            extra = orjson.loads(detail) if detail else {}
            record = BlockRecord.model_validate(
                {
                    "kind": kind,
                    "key": key,
                    "until": until,
                    "reason": extra.get("reason", ""),
                    "edge": extra.get("edge", ""),
                }
            )
            records.append(record)
        return records

    async def clear(self, kind: BlockKind, key: str) -> bool:
        """Lift a block and forget its failures; False when there was neither."""
        member = f"{kind}|{key}"
        pipe = self.store.redis.pipeline(transaction=True)
        pipe.zrem(self._blocks, member)
        pipe.hdel(self._detail, member)
        if kind in AUTH_KINDS:
            pipe.delete(self._counter(kind, key))
        elif kind == "flood":  # the cluster's count of it starts over too
            pipe.delete(*source_keys(self.store, key))
            pipe.zrem(news_key(self.store), key)
        replies = await pipe.execute()
        return any(bool(reply) for reply in replies[:1] + replies[2:])

    async def allowlist(self) -> dict[str, AllowEntry]:
        stored: dict[Any, Any] = await self.store.redis.hgetall(self._allow)
        return {
            entry_id.decode(): AllowEntry.model_validate_json(value)
            for entry_id, value in stored.items()
        }

    async def put_allowed(self, entry_id: str, entry: AllowEntry) -> bool:
        """Store an entry; True when it is new."""
        return bool(await self.store.redis.hset(self._allow, entry_id, entry.model_dump_json()))

    async def delete_allowed(self, entry_id: str) -> bool:
        return bool(await self.store.redis.hdel(self._allow, entry_id))


def _detail(reason: str, edge: str, now: float) -> str:
    return orjson.dumps({"reason": reason, "edge": edge, "since": math.floor(now)}).decode()
