"""The dispatcher's ``least_calls`` counts shared by every edge worker, through Redis.

Why whole counts, not increments: each worker writes the calls it holds per
destination now (replacing what it wrote before) under its own key that lapses
unless rewritten, so a crashed worker's calls stop counting by themselves
within ``ttl``, and a lost exchange is repaired by the next one. One script per
exchange writes a worker's counts and answers with the cluster's totals (every
live worker's, its own included); never a round trip per call.

Keys (under the namespace)::

    dispatch:calls:<worker>   hash "<set>\\n<uri>" → that worker's calls there (PX: ttl)
    dispatch:workers          sorted set: worker → when its counts lapse (ms)
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.store import Store

_EXCHANGE = """
-- KEYS: the worker's counts, the workers; ARGV: now (ms, '' for Redis's clock), ttl ms,
-- the worker, the counts' key prefix, then "<set>\\n<uri>", count pairs
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local mine, workers, ttl = KEYS[1], KEYS[2], tonumber(ARGV[2])
redis.call('DEL', mine)
if #ARGV > 4 then
  redis.call('HSET', mine, unpack(ARGV, 5))
  redis.call('PEXPIRE', mine, ttl)
end
redis.call('ZADD', workers, now + ttl, ARGV[3])
redis.call('PEXPIRE', workers, ttl)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now)
local totals, order = {}, {}
for _, worker in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
  local counts = redis.call('HGETALL', ARGV[4] .. worker)
  for k = 1, #counts, 2 do
    local field = counts[k]
    if not totals[field] then
      totals[field] = 0
      order[#order + 1] = field
    end
    totals[field] = totals[field] + tonumber(counts[k + 1])
  end
end
local found = {}
for _, field in ipairs(order) do
  found[#found + 1] = field
  found[#found + 1] = totals[field]
end
return found
"""


class SharedCallCounts:
    """The script over one namespace, for one worker (see the module docstring)."""

    def __init__(self, store: Store, worker: str, ttl: float) -> None:
        self.worker = worker
        self.ttl_ms = max(1000, round(ttl * 1000))
        self._prefix = store.key("dispatch", "calls", "")
        self._keys = [self._prefix + worker, store.key("dispatch", "workers")]
        self._exchange = store.redis.register_script(_EXCHANGE)

    async def exchange(
        self, counts: Mapping[str, Mapping[str, int]], now_ms: int | None = None
    ) -> dict[str, dict[str, int]]:
        """Write this worker's calls (set → destination URI → calls) and return the
        cluster's, this worker's included; one round trip."""
        args: list[str | int] = ["" if now_ms is None else now_ms, self.ttl_ms, self.worker]
        args.append(self._prefix)
        for set_id, by_uri in counts.items():
            for uri, count in by_uri.items():
                if count > 0:
                    args += [f"{set_id}\n{uri}", count]
        found = await self._exchange(keys=self._keys, args=args)
        totals: dict[str, dict[str, int]] = {}
        for k in range(0, len(found), 2):
            field = found[k].decode() if isinstance(found[k], bytes) else str(found[k])
            set_id, _, uri = field.partition("\n")
            totals.setdefault(set_id, {})[uri] = int(found[k + 1])
        return totals
