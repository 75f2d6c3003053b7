"""The flood detector's counts shared by every edge worker: per-source windows in Redis.

Why batches: pike counts every request, so a round trip per request would cost
more than the flood it stops. Each worker counts locally and sends what it
counted since its last batch, for all its sources at once, in one script
(:meth:`FloodCounts.exchange`), which adds them to each source's cluster-wide
window, blocks a source whose window passed the limit, and answers with the
windows and with the blocks decided since the worker's previous batch (by any
worker of any edge), so a block holds everywhere one batch later.

Keys (under the namespace)::

    protection:pike:source:<ip>   hash {c: this period's requests, p: the previous
                                  period's, s: when this period began (ms)}, lives 2 periods
    protection:pike:block:<ip>    set while the source is blocked (PX: the block time)
    protection:pike:news          sorted set: ip → when its block began or was extended (ms),
                                  trimmed to the block time

The window is the detector's own (``previous * share of the period still
covering it + current``, :mod:`services.edge.protection.flood`) on Redis's clock
(``TIME``), one clock for every edge; tests may pass their own ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from shared.store import Store

NEWS_PER_EXCHANGE: Final = 1000
"""Blocks one answer carries at most (the oldest first; the next answer goes on from there)."""

_EXCHANGE = """
-- KEYS: the news set; ARGV: now (ms, '' for Redis's clock), period ms, limit, block ms, the
-- news cursor (ms), the keys' prefix, the batch: "<ip> <new requests>" lines
-- Why one text for the batch and one for the windows: a command's arguments each cost the
-- client an encoding (redis-py), a batch of 200 sources 400 of them; a text costs one.
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local period, limit, block = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local news, prefix = KEYS[1], ARGV[6]
local windows, started = {}, {}
for host, count in string.gmatch(ARGV[7], '(%S+) (%d+)') do
  local window = prefix .. 'source:' .. host
  local state = redis.call('HMGET', window, 'c', 'p', 's')
  local current, previous = tonumber(state[1]) or 0, tonumber(state[2]) or 0
  local start = tonumber(state[3]) or now
  local periods = math.floor((now - start) / period)
  if periods >= 1 then
    if periods == 1 then previous = current else previous = 0 end
    current = 0
    start = start + periods * period
  end
  current = current + tonumber(count)
  redis.call('HSET', window, 'c', current, 'p', previous, 's', start)
  redis.call('PEXPIRE', window, 2 * period)
  if previous * (1 - (now - start) / period) + current > limit then
    local blocked = prefix .. 'block:' .. host
    if redis.call('EXISTS', blocked) == 0 then started[#started + 1] = host end
    redis.call('SET', blocked, '1', 'PX', block)
    redis.call('ZADD', news, now, host)
  end
  windows[#windows + 1] = string.format('%d %d %d', previous, current, now - start)
end
redis.call('ZREMRANGEBYSCORE', news, '-inf', now - block)
redis.call('PEXPIRE', news, block)
local found = {now, table.concat(windows, ' '), table.concat(started, ' ')}
local since = ARGV[5]
if since == '' then since = now end
local recent = redis.call(
  'ZRANGEBYSCORE', news, since, '+inf', 'WITHSCORES', 'LIMIT', 0, NEWS_PER_EXCHANGE)
if #recent == 2 * NEWS_PER_EXCHANGE then found[1] = tonumber(recent[#recent]) end
for k = 1, #recent, 2 do
  local left = redis.call('PTTL', prefix .. 'block:' .. recent[k])
  if left > 0 then
    found[#found + 1] = recent[k]
    found[#found + 1] = left
  end
end
return found
""".replace("NEWS_PER_EXCHANGE", str(NEWS_PER_EXCHANGE))


@dataclass(frozen=True, slots=True)
class Exchanged:
    """A batch's answer: the next batch's news cursor (Redis's clock, ms), the batch's
    sources' windows (previous, current, seconds into the current period) and the blocks
    running that began or were extended since the cursor (source → seconds left), and
    those this batch began (no block ran before: this worker announces them)."""

    cursor_ms: int
    windows: dict[str, tuple[int, int, float]]
    blocks: dict[str, float]
    started: tuple[str, ...] = ()


class FloodCounts:
    """The script over one namespace (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._news = news_key(store)
        self._exchange = store.redis.register_script(_EXCHANGE)

    async def exchange(
        self,
        counts: Mapping[str, int],
        *,
        period: float,
        limit: int,
        block_time: float,
        since_ms: int | None,
        now_ms: int | None = None,
    ) -> Exchanged:
        """Add ``counts`` (source → new requests) to the cluster; one round trip."""
        args: list[str | int] = [
            "" if now_ms is None else now_ms,
            round(period * 1000),
            limit,
            round(block_time * 1000),
            "" if since_ms is None else since_ms,
            self._store.key("protection", "pike", ""),
            "\n".join(f"{host} {count}" for host, count in counts.items()),
        ]
        found = await self._exchange(keys=[self._news], args=args)
        figures = [int(part) for part in _text(found[1]).split()]
        windows = {
            host: (figures[3 * i], figures[3 * i + 1], figures[3 * i + 2] / 1000)
            for i, host in enumerate(counts)
        }
        rest = found[3:]
        blocks = {_text(rest[i]): int(rest[i + 1]) / 1000 for i in range(0, len(rest), 2)}
        return Exchanged(int(found[0]), windows, blocks, tuple(_text(found[2]).split()))


def source_keys(store: Store, host: str) -> list[str]:
    """A source's window and block keys (an operator's clear deletes both)."""
    return [
        store.key("protection", "pike", "source", host),
        store.key("protection", "pike", "block", host),
    ]


def news_key(store: Store) -> str:
    return store.key("protection", "pike", "news")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
