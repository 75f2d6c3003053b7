"""What an operator does to targets through the API: list, disable, enable, set a policy.

Any health instance serves these, prober or not: the change is written to
Redis (the disabled set survives restarts and is checked by every prober
write, so a probe never re-enables a target), announced as
``health.target.state``, and ``health.target.overridden`` tells the prober to
reload the target.
"""

from __future__ import annotations

import time
from typing import Any

from services.health.catalog import Catalog
from services.health.machine import TargetHealth
from services.health.rounds import effective_policy
from services.health.targets import ProbeTarget
from shared.bus import Bus
from shared.contracts.health import TargetOverridden, TargetState
from shared.health.policy import PolicyOverride, ProbePolicy
from shared.health.store import HealthStore


class UnknownTargetError(LookupError):
    pass


class Operator:
    def __init__(
        self, catalog: Catalog, store: HealthStore, bus: Bus, defaults: ProbePolicy
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.bus = bus
        self.defaults = defaults

    def _target(self, target_id: str) -> ProbeTarget:
        target = self.catalog.targets.get(target_id)
        if target is None:
            raise UnknownTargetError(target_id)
        return target

    async def listing(self) -> list[dict[str, Any]]:
        """Every target with its stored state ("not probed yet" until the prober writes one)."""
        targets = list(self.catalog.targets.values())
        records = await self.store.states([target.id for target in targets])
        policies = await self.store.policies()
        now = time.time()
        return [
            self._view(
                target, record, effective_policy(self.defaults, policies.get(target.id)), now
            )
            for target, record in zip(targets, records, strict=True)
        ]

    async def view(self, target_id: str) -> dict[str, Any]:
        target = self._target(target_id)
        (record,) = await self.store.states([target_id])
        policy = effective_policy(self.defaults, await self.store.policy(target_id))
        return self._view(target, record, policy, time.time())

    @staticmethod
    def _view(
        target: ProbeTarget, record: TargetState | None, policy: ProbePolicy, now: float
    ) -> dict[str, Any]:
        if record is None or record.address != target.address:
            record = TargetHealth.new(target, policy, now).record()
            record = record.model_copy(update={"reason": "not probed yet"})
        return {**record.model_dump(mode="json"), "policy": policy.model_dump(mode="json")}

    async def set_enabled(self, target_id: str, enabled: bool) -> dict[str, Any]:
        target = self._target(target_id)
        (record,) = await self.store.states([target_id])
        policy = effective_policy(self.defaults, await self.store.policy(target_id))
        now = time.time()
        if record is not None and record.address == target.address:
            machine = TargetHealth.restored(target, policy, record)
        else:
            machine = TargetHealth.new(target, policy, now)
        changed = machine.enable(now) if enabled else machine.disable(now)
        if changed:
            state = machine.record()
            await self.store.write_override(state)
            await self.bus.publish(state)
            await self.bus.publish(TargetOverridden(target=target_id))
        return self._view(target, machine.record(), policy, now)

    async def set_policy(self, target_id: str, override: PolicyOverride | None) -> bool:
        """Store or remove a target's policy override; False when there was none to remove."""
        self._target(target_id)
        found = await self.store.set_policy(target_id, override)
        await self.bus.publish(TargetOverridden(target=target_id))
        return found
