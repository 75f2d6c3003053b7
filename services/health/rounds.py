"""The prober's work while it holds the lease: probe each target on its interval.

One loop wakes at the earliest due probe (or when told: a target list change,
an operator's override, an edge's report), starts the due probes
concurrently, and sleeps again. Each outcome goes through the target's
:class:`TargetHealth`; the record is stored after every probe (latency,
``checked_at``) and published only when the state changes.

The loop scans every target per wake-up; at the probe rates of a SIP farm
(thousands of targets, seconds apart) that is far below the cost of the probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.health.catalog import Catalog
from services.health.machine import TargetHealth
from services.health.prober import OptionsProber, ProbeOutcome
from services.health.targets import ProbeTarget, dns_target_id, gateway_target_id
from shared.bus import Bus
from shared.contracts.edge import DestinationFailed, GatewayFailed
from shared.contracts.health import TargetRemoved, TargetState
from shared.dispatcher import destination_target_id
from shared.health.policy import PolicyOverride, ProbePolicy
from shared.health.store import REFUSED_DISABLED, REFUSED_NOT_PROBER, HealthStore

IDLE_WAKE = 60.0


class LeaseLostError(Exception):
    """Redis refused a write because another instance now holds the prober's lease."""


def effective_policy(defaults: ProbePolicy, override: PolicyOverride | None) -> ProbePolicy:
    return defaults if override is None else override.over(defaults)


class ProbeRounds:
    def __init__(
        self,
        *,
        catalog: Catalog,
        store: HealthStore,
        bus: Bus,
        prober: OptionsProber,
        defaults: ProbePolicy,
        owner: str,
        log: logging.Logger,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.bus = bus
        self.prober = prober
        self.defaults = defaults
        self.owner = owner
        self.log = log
        self.machines: dict[str, TargetHealth] = {}
        self._due: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._sync_needed = True
        self._failure: BaseException | None = None
        self._stopping = False

    # -- what other parts of the service tell the prober ----------------------

    def targets_changed(self) -> None:
        """The catalog or an operator override changed: reconcile before the next probe."""
        self._sync_needed = True
        self._wake.set()

    async def edge_failed(self, event: GatewayFailed | DestinationFailed) -> None:
        if isinstance(event, GatewayFailed) and event.target:  # one DNS target, not the name
            target_id = dns_target_id(event.gateway_id, event.target)
        elif isinstance(event, GatewayFailed):
            target_id = gateway_target_id(event.gateway_id)
        else:
            target_id = destination_target_id(event.set_id, event.address)
            if event.target:  # one DNS target of a destination given by name
                target_id = f"{target_id}@{event.target}"
        machine = self.machines.get(target_id)
        if machine is None:
            return
        reason = f"edge: {event.reason} ({event.status})"
        if event.retry_after:
            reason += f", Retry-After {event.retry_after}s"
        if machine.edge_failed(reason, event.retry_after, time.time()):
            await self._save(machine, publish=True)
        self._due[target_id] = asyncio.get_running_loop().time()
        self._wake.set()

    # -- the loop ------------------------------------------------------------

    def stop(self) -> None:
        """End :meth:`run` at its next turn.

        Besides cancelling its task: a cancellation landing inside a library
        call (the Redis client) can be swallowed, and the loop must end anyway.
        """
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        try:
            await self.prober.open()  # in the try: a port refused still stops the HEP sender
            while not self._stopping:
                if self._failure is not None:
                    raise self._failure
                # Cleared before the work, so a wake-up during it is not lost.
                self._wake.clear()
                if self._sync_needed:
                    self._sync_needed = False
                    await self._sync()
                delay = await self._start_due_probes()
                # asyncio.timeout, not wait_for: 3.11's wait_for swallows a
                # cancellation that lands as the wake-up does.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            for task in self._in_flight.values():
                task.cancel()
            self._in_flight.clear()
            await self.prober.close()

    async def _start_due_probes(self) -> float:
        """Start what is due; returns how long to sleep until the next thing is."""
        now = asyncio.get_running_loop().time()
        wall = time.time()
        next_at = now + IDLE_WAKE
        for target_id, machine in self.machines.items():
            if machine.until is not None:
                if wall < machine.until:
                    next_at = min(next_at, now + machine.until - wall)
                    continue
                if machine.hold_expired(wall):
                    await self._save(machine, publish=True)
                self._due[target_id] = now
            if not machine.wants_probes or target_id in self._in_flight:
                continue
            due = self._due.get(target_id, now)
            if due <= now:
                due = now + machine.policy.interval
                self._due[target_id] = due
                self._in_flight[target_id] = asyncio.create_task(self._probe(machine))
            next_at = min(next_at, due)
        return max(0.0, next_at - now)

    async def _probe(self, machine: TargetHealth) -> None:
        target_id = machine.target.id
        try:
            outcome = await self.prober.probe(machine.target.address)
            if self.machines.get(target_id) is machine:
                await self._judge(machine, outcome)
        except LeaseLostError as error:
            self._failure = error
        except Exception as error:
            self.log.error("probe of %s failed: %s: %s", target_id, type(error).__name__, error)
        finally:
            self._in_flight.pop(target_id, None)
            self._wake.set()

    async def _judge(self, machine: TargetHealth, outcome: ProbeOutcome) -> None:
        now = time.time()
        status = outcome.status
        if status is not None and outcome.rtt_ms is not None and machine.policy.accepts(status):
            changed = machine.probe_answered(outcome.rtt_ms, f"answered {status}", now)
        elif status is not None:
            changed = machine.probe_failed(f"answered {status}, not an accepted code", now)
        else:
            changed = machine.probe_failed(outcome.error or "no answer", now)
        if changed:
            self.log.info(
                "%s is %s: %s",
                machine.target.id,
                machine.state,
                machine.reason,
                extra={"target": machine.target.id, "state": machine.state},
            )
        await self._save(machine, publish=changed)

    async def _save(self, machine: TargetHealth, *, publish: bool) -> None:
        record = machine.record()
        written = await self.store.write_state(record, self.owner)
        if written == REFUSED_NOT_PROBER:
            raise LeaseLostError("another instance holds the prober's lease")
        if written == REFUSED_DISABLED:
            self.targets_changed()  # an operator disabled it meanwhile: follow the record
            return
        if publish:
            await self.bus.publish(record)

    # -- reconciling with the catalog and the operator's overrides ------------

    async def _sync(self) -> None:
        targets = self.catalog.targets
        gone = [tid for tid in self.machines if tid not in targets]
        for target_id in gone:
            del self.machines[target_id]
            self._due.pop(target_id, None)
            task = self._in_flight.pop(target_id, None)
            if task is not None:
                task.cancel()
        if gone:
            await self.store.forget(gone)
            for target_id in gone:
                await self.bus.publish(TargetRemoved(target=target_id))
        disabled = await self.store.disabled()
        policies = await self.store.policies()
        ids = list(targets)
        records = await self.store.states(ids)
        now = asyncio.get_running_loop().time()
        for target_id, record in zip(ids, records, strict=True):
            target = targets[target_id]
            policy = effective_policy(self.defaults, policies.get(target_id))
            machine = self.machines.get(target_id)
            if machine is not None and machine.target == target:
                if machine.adopt_policy(policy, time.time()):
                    await self._save(machine, publish=True)
                if (machine.state == "disabled") == (target_id in disabled):
                    continue
            await self._adopt(target, policy, record, target_id in disabled)
            self._due[target_id] = now

    async def _adopt(
        self, target: ProbeTarget, policy: ProbePolicy, record: TargetState | None, disabled: bool
    ) -> None:
        """Take a target over from its stored record (a restart, a takeover) or start it."""
        wall = time.time()
        if record is not None and record.address == target.address:
            machine = TargetHealth.restored(target, policy, record)
        else:
            machine = TargetHealth.new(target, policy, wall)
        changed = machine.disable(wall) if disabled else machine.enable(wall)
        changed = machine.adopt_policy(policy, wall) or changed
        self.machines[target.id] = machine
        if record is None or changed or record.address != target.address:
            await self._save(machine, publish=True)
