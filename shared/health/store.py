"""The health service's Redis layout, shared by every health instance.

Keys (under the namespace)::

    health:states            hash target id → TargetState JSON (the published record)
    health:disabled          set of target ids an operator disabled
    health:policies          hash target id → PolicyOverride JSON
    health:dispatcher:sets   hash set id → DispatcherSet JSON
    health:prober            the prober's lease (its instance name, with a TTL)

Why the state write is a script: a prober holding a stale view must never
overwrite an operator's ``disabled`` (nor write after losing its lease), so
the check and the write are one atomic step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.contracts.health import TargetState
from shared.dispatcher import DispatcherSet
from shared.health.policy import PolicyOverride
from shared.store import Store

_WRITE_STATE = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then
  return -1
end
if ARGV[2] ~= 'disabled' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_OVERRIDE = """
if ARGV[2] == 'disabled' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

WRITTEN, REFUSED_DISABLED, REFUSED_NOT_PROBER = 1, 0, -1


class HealthStore:
    def __init__(self, store: Store) -> None:
        self.redis = store.redis
        self.states_key = store.key("health", "states")
        self.disabled_key = store.key("health", "disabled")
        self.policies_key = store.key("health", "policies")
        self.sets_key = store.key("health", "dispatcher", "sets")
        self.lease_key = store.key("health", "prober")
        self._write_state = self.redis.register_script(_WRITE_STATE)
        self._override = self.redis.register_script(_OVERRIDE)

    # -- target states -------------------------------------------------------

    async def write_state(self, record: TargetState, prober: str) -> int:
        """Store a prober's record: WRITTEN, REFUSED_DISABLED or REFUSED_NOT_PROBER."""
        keys = [self.states_key, self.disabled_key, self.lease_key]
        args = [record.target, record.state, record.model_dump_json(), prober]
        return int(await self._write_state(keys=keys, args=args))

    async def write_override(self, record: TargetState) -> None:
        """Store an operator's disable (record in state ``disabled``) or enable."""
        keys = [self.states_key, self.disabled_key]
        await self._override(
            keys=keys, args=[record.target, record.state, record.model_dump_json()]
        )

    async def states(self, target_ids: Sequence[str]) -> list[TargetState | None]:
        if not target_ids:
            return []
        found = await self.redis.hmget(self.states_key, list(target_ids))
        return [None if raw is None else TargetState.model_validate_json(raw) for raw in found]

    async def all_states(self) -> list[TargetState]:
        """Every stored record: what an edge loads at start before following the events."""
        found = await self.redis.hgetall(self.states_key)
        return [TargetState.model_validate_json(raw) for raw in found.values()]

    async def forget(self, target_ids: Iterable[str]) -> None:
        """Drop the states of targets that no longer exist (operator overrides stay)."""
        ids = list(target_ids)
        if ids:
            await self.redis.hdel(self.states_key, *ids)

    async def disabled(self) -> set[str]:
        return {_text(raw) for raw in await self.redis.smembers(self.disabled_key)}

    # -- policies ------------------------------------------------------------

    async def policies(self) -> dict[str, PolicyOverride]:
        found = await self.redis.hgetall(self.policies_key)
        return {_text(key): PolicyOverride.model_validate_json(raw) for key, raw in found.items()}

    async def policy(self, target_id: str) -> PolicyOverride | None:
        raw = await self.redis.hget(self.policies_key, target_id)
        return None if raw is None else PolicyOverride.model_validate_json(raw)

    async def set_policy(self, target_id: str, policy: PolicyOverride | None) -> bool:
        """Store (or with None remove) an override; False when there was none to remove."""
        if policy is None:
            return bool(await self.redis.hdel(self.policies_key, target_id))
        await self.redis.hset(
            self.policies_key, target_id, policy.model_dump_json(exclude_none=True)
        )
        return True

    # -- dispatcher sets -----------------------------------------------------

    async def dispatcher_sets(self) -> dict[str, DispatcherSet]:
        found = await self.redis.hgetall(self.sets_key)
        return {_text(key): DispatcherSet.model_validate_json(raw) for key, raw in found.items()}

    async def dispatcher_set(self, set_id: str) -> DispatcherSet | None:
        raw = await self.redis.hget(self.sets_key, set_id)
        return None if raw is None else DispatcherSet.model_validate_json(raw)

    async def put_dispatcher_set(self, set_id: str, dispatcher_set: DispatcherSet) -> None:
        await self.redis.hset(self.sets_key, set_id, dispatcher_set.model_dump_json())

    async def delete_dispatcher_set(self, set_id: str) -> bool:
        return bool(await self.redis.hdel(self.sets_key, set_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
