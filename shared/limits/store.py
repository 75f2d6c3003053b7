"""Limits shared by every edge worker: concurrent-call leases and CPS token buckets in Redis.

Why Redis scripts: a limit counted per process lets N workers (or N edges)
admit N times the limit, and OpenSIPS/Kamailio users report replicated
pipes double-counting. One Lua script checks and takes every limit of a call
at once (all or nothing), so two edges racing for the last slot cannot both
get it: exact, whatever the number of edges.

Keys (under the namespace)::

    limits:calls:<entity>   sorted set: Call-ID → when its lease ends (ms, Redis's clock)
    limits:cps:<entity>     hash {t: tokens left, at: when counted (ms)}
    limits:entities         sorted set: entity → when it was last used (for GET /v1/limits)
    limits:call:<call id>   set: the lease sets the call holds, so that any edge can free
                            them from the Call-ID alone (a BYE through another edge)

An entity is ``peer:<id>``, ``rule:<id>`` (a destination prefix), ``gateway:<id>``,
``carrier:<id>``, ``subscriber:<user@domain>`` or ``source:<ip>``.
A lease lasts ``lease_ms`` unless renewed: the edge holding the call renews its
leases while the call lives and frees them at its end, so a crashed edge's
leases lapse by themselves within one lease time. The clock is Redis's
(``TIME``), one clock for every edge; tests may pass their own ``now``.

Redis operations per call: one ``EVALSHA`` to admit it (whatever the number of
limits), one to free it, and one pipelined ``EVALSHA`` per renewal round for
all the calls an edge worker holds. A BYE through an edge that did not admit the
call frees it by Call-ID (one ``EVALSHA``), when that edge's table has limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from shared.limits.model import ADMITTED, LimitQuery, LimitVerdict
from shared.store import Store

_CLOCK = """
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
"""

_ACQUIRE = (
    _CLOCK
    + """
-- KEYS: n lease sets, the g candidate gateways' lease sets (c_k for the k-th: its own, its
-- carriers'; C in all), then the token buckets, then the C candidates' token buckets, then
-- the call's set of lease sets, the entities index
-- ARGV: now, lease ms, call id, n, g, the n caps, c_1..c_g, the C candidates' (cap, rate,
-- size) triples (cap -1, rate 0: that limit does not apply), the buckets' (rate, size, take)
-- triples, the entities' names
local lease, call, n, g = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local counts, caps = 5 + n, 5 + n + g
local channels = 0
for k = 1, g do channels = channels + tonumber(ARGV[counts + k]) end
local buckets = #KEYS - 2 - n - 2 * channels
local rates = caps + 3 * channels
local function refilled(key, rate, size)
  local state = redis.call('HMGET', key, 't', 'at')
  local left, at = tonumber(state[1]) or size, tonumber(state[2]) or now
  return math.min(size, left + math.max(0, now - at) * rate / 1000)
end
local taken = {}
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if not redis.call('ZSCORE', KEYS[i], call)
     and redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[5 + i]) then
    return {1, i, 0}
  end
end
local tokens = {}
for j = 1, buckets do
  local rate, size = tonumber(ARGV[rates + 3 * j - 2]), tonumber(ARGV[rates + 3 * j - 1])
  local left = refilled(KEYS[n + channels + j], rate, size)
  if left < 1 then
    return {2, j, math.ceil((1 - left) * 1000 / rate)}
  end
  taken[j] = tonumber(ARGV[rates + 3 * j])  -- past the call's own: a debt the refill repays
  tokens[j] = left - taken[j]
end
local chosen, first, offset = 0, 0, n
local paced = {}
for k = 1, g do
  local free = true
  paced = {}
  for c = offset + 1, offset + tonumber(ARGV[counts + k]) do
    local at = caps + 3 * (c - n)
    local cap, rate = tonumber(ARGV[at - 2]), tonumber(ARGV[at - 1])
    if cap >= 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[c], '-inf', now)
      if not redis.call('ZSCORE', KEYS[c], call) and redis.call('ZCARD', KEYS[c]) >= cap then
        free = false
      end
    end
    if rate > 0 then
      local key = KEYS[n + channels + buckets + c - n]
      local left = refilled(key, rate, tonumber(ARGV[at]))
      if left < 1 then free = false end
      paced[#paced + 1] = {key, left - 1}
    end
  end
  if free then
    chosen, first = k, offset + 1
    break
  end
  offset = offset + tonumber(ARGV[counts + k])
end
local function spend(key, left)
  redis.call('HSET', key, 't', tostring(left), 'at', now)
  redis.call('PEXPIRE', key, 60000)
end
for j = 1, buckets do spend(KEYS[n + channels + j], tokens[j]) end
local held = KEYS[#KEYS - 1]
local function lease_in(key)
  redis.call('ZADD', key, now + lease, call)
  redis.call('PEXPIRE', key, lease + 60000)
  redis.call('SADD', held, key)
  redis.call('PEXPIRE', held, lease + 60000)
end
for i = 1, n do lease_in(KEYS[i]) end
if chosen > 0 then
  for c = first, first + tonumber(ARGV[counts + chosen]) - 1 do
    if tonumber(ARGV[caps + 3 * (c - n) - 2]) >= 0 then lease_in(KEYS[c]) end
  end
  for _, bucket in ipairs(paced) do spend(bucket[1], bucket[2]) end
end
local index = KEYS[#KEYS]
for k = rates + 3 * buckets + 1, #ARGV do
  redis.call('ZADD', index, now, ARGV[k])
end
return {0, chosen, 0, unpack(taken)}
"""
)

_RENEW = (
    _CLOCK
    + """
-- KEYS: lease sets, then the call's set of them; ARGV: now, lease ms, call id: extend the
-- call's leases it still holds
local kept = 0
redis.call('PEXPIRE', KEYS[#KEYS], tonumber(ARGV[2]) + 60000)
for i = 1, #KEYS - 1 do
  if redis.call('ZSCORE', KEYS[i], ARGV[3]) then
    redis.call('ZADD', KEYS[i], tonumber(ARGV[2]) + now, ARGV[3])
    kept = kept + 1
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]) + 60000)
  end
end
return kept
"""
)

_RELEASE_CALL = """
-- KEYS: the call's set of lease sets; ARGV: call id: free the call wherever it was admitted
local sets = redis.call('SMEMBERS', KEYS[1])
for _, key in ipairs(sets) do redis.call('ZREM', key, ARGV[1]) end
redis.call('DEL', KEYS[1])
return #sets
"""

_USAGE = (
    _CLOCK
    + """
-- KEYS: lease sets, then buckets (pairs per entity); ARGV: now
local found = {}
for i = 1, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local state = redis.call('HMGET', KEYS[i + 1], 't', 'at')
  found[#found + 1] = redis.call('ZCARD', KEYS[i])
  found[#found + 1] = state[1] or false
  found[#found + 1] = state[2] or false
end
found[#found + 1] = now
return found
"""
)

ENTITIES_KEPT: Final = 100_000
"""The index of limited entities (for the operator's view) keeps the most recent ones."""


@dataclass(frozen=True, slots=True)
class Usage:
    entity: str
    concurrent: int
    tokens: float | None
    """Tokens left in the CPS bucket as of now (None: no bucket), before refilling."""


class SharedLimits:
    """The scripts over one namespace (see the module docstring)."""

    def __init__(self, store: Store, lease_ms: int = 90_000) -> None:
        self._store = store
        self._redis = store.redis
        self.lease_ms = lease_ms
        self._entities = store.key("limits", "entities")
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._usage = self._redis.register_script(_USAGE)
        self._release_call = self._redis.register_script(_RELEASE_CALL)

    def _calls(self, entity: str) -> str:
        return self._store.key("limits", "calls", entity)

    def _held(self, call_id: str) -> str:
        return self._store.key("limits", "call", call_id)

    def _bucket(self, entity: str) -> str:
        return self._store.key("limits", "cps", entity)

    async def acquire(self, query: LimitQuery, now_ms: int | None = None) -> LimitVerdict:
        """Take every lease and token of ``query.demands`` and a channel of the first capped
        gateway with one free, or nothing; acquiring again for a call that holds its leases
        takes no second slot (but a CPS token, as a new attempt would)."""
        demands, gateways = query.demands, query.gateways
        leased = [demand for demand in demands if demand.max_concurrent is not None]
        rated = [demand for demand in demands if demand.max_cps is not None]
        if not leased and not rated and not gateways:
            return ADMITTED
        capped = [cap for channel in gateways for cap in channel.caps]
        keys = [self._calls(demand.entity) for demand in (*leased, *capped)]
        keys += [self._bucket(demand.entity) for demand in rated]
        keys += [self._bucket(demand.entity) for demand in capped]
        keys += [self._held(query.call_id), self._entities]
        args: list[str | int] = [
            "" if now_ms is None else now_ms,
            self.lease_ms,
            query.call_id,
            len(leased),
            len(gateways),
            *(demand.max_concurrent or 0 for demand in leased),
            *(len(channel.caps) for channel in gateways),
            *(
                value
                for d in capped
                for value in (
                    -1 if d.max_concurrent is None else d.max_concurrent,
                    d.max_cps or 0,
                    d.burst or d.max_cps or 0,
                )
            ),
            *(
                value
                for d in rated
                for value in (d.max_cps or 0, d.burst or d.max_cps or 0, d.take)
            ),
            *dict.fromkeys(demand.entity for demand in (*demands, *capped)),
        ]
        code, which, wait, *taken = (
            int(part) for part in await self._acquire(keys=keys, args=args)
        )
        if code == 1:
            return LimitVerdict(leased[which - 1].entity, "concurrent")
        if code == 2:
            return LimitVerdict(rated[which - 1].entity, "cps", wait)
        spare = tuple((d.entity, n - 1) for d, n in zip(rated, taken, strict=True) if n > 1)
        if not gateways:
            return LimitVerdict(spare=spare) if spare else ADMITTED
        names = tuple(channel.gateway for channel in gateways)
        if which == 0:
            return LimitVerdict(skipped=names, spare=spare)
        chosen = gateways[which - 1]
        return LimitVerdict(
            gateway=chosen.gateway,
            skipped=names[: which - 1],
            channels=tuple(cap.entity for cap in chosen.caps),
            spare=spare,
        )

    async def release(self, call_id: str, entities: Sequence[str], *, whole: bool = True) -> None:
        """Free the call's leases (a BYE, a failure, a CANCEL); freeing twice is harmless.
        ``whole`` False: only these (a channel left on failover), the call keeps the rest."""
        keys = [self._calls(entity) for entity in entities]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, call_id)
            if whole:
                pipe.delete(self._held(call_id))
            else:
                pipe.srem(self._held(call_id), *keys)
            await pipe.execute()

    async def release_call(self, call_id: str) -> int:
        """Free a call's leases knowing only its Call-ID (a BYE through another edge than
        the one that admitted it); returns how many it held (0: none, or freed already)."""
        return int(await self._release_call(keys=[self._held(call_id)], args=[call_id]))

    async def renew(
        self, calls: Sequence[tuple[str, Sequence[str]]], now_ms: int | None = None
    ) -> list[str]:
        """Extend the leases of every (call id, entities) still held; one round trip for all.
        Returns the calls that hold none any more (lapsed, or freed through another edge):
        a lapsed lease is not taken back."""
        if not calls:
            return []
        now = "" if now_ms is None else now_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for call_id, entities in calls:
                keys = [self._calls(entity) for entity in entities]
                keys.append(self._held(call_id))
                await self._renew(keys=keys, args=[now, self.lease_ms, call_id], client=pipe)
            kept = await pipe.execute()
        return [call_id for (call_id, _), count in zip(calls, kept, strict=True) if not int(count)]

    async def usage(self, entities: Sequence[str], now_ms: int | None = None) -> list[Usage]:
        """Calls up and tokens left per entity, as of one instant."""
        if not entities:
            return []
        keys = [key for entity in entities for key in (self._calls(entity), self._bucket(entity))]
        found = await self._usage(keys=keys, args=["" if now_ms is None else now_ms])
        return [
            Usage(entity, int(found[3 * i]), _number(found[3 * i + 1]))
            for i, entity in enumerate(entities)
        ]

    async def known(self, count: int = 1000) -> list[str]:
        """The entities most recently limited (newest first), for the operator's view."""
        await self._redis.zremrangebyrank(self._entities, 0, -ENTITIES_KEPT - 1)
        found = await self._redis.zrevrange(self._entities, 0, count - 1)
        return [name.decode() if isinstance(name, bytes) else str(name) for name in found]


def _number(value: bytes | None) -> float | None:
    return None if value is None else float(value)
