"""The prober's lease: one health instance probes, the others stand by.

Why one prober rather than sharding targets: a probe round is cheap (one
datagram per target per interval), while sharding would need a membership
protocol and rebalancing; a single lease gives "each target probed once per
interval" with one Redis key. The holder renews every third of the TTL; a
holder that dies stops renewing and another instance takes over once the TTL
runs out, i.e. within ``lease_ttl`` plus one renewal period.
"""

from __future__ import annotations

from shared.store import Store

_ACQUIRE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, store: Store, key: str, owner: str, ttl: float) -> None:
        self.key = key
        self.owner = owner
        self.ttl_ms = max(1, round(ttl * 1000))
        self._acquire = store.redis.register_script(_ACQUIRE_OR_RENEW)
        self._release = store.redis.register_script(_RELEASE)

    async def hold(self) -> bool:
        """Take the lease if free, extend it if ours; True while we hold it."""
        return bool(await self._acquire(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> None:
        """Give the lease up at a clean stop, so a standby takes over at once."""
        await self._release(keys=[self.key], args=[self.owner])
