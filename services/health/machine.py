"""One target's health as a state machine: probe outcomes and edge reports in, state out.

Sans-IO: the caller passes ``now`` (Unix seconds) and gets back whether the
state changed, which is when it stores and announces it.

``up`` → a failed probe or an edge report → ``probing`` (suspected) →
``failures_to_down`` consecutive failures → ``down`` → ``successes_to_up``
answered probes → ``up``. A 503 with Retry-After holds a target ``down``
until then whatever the probes say. ``disabled`` is the operator's and only
the operator leaves it. A target whose mode becomes ``never`` is released from
what old probes said (``down``, ``probing``): nothing will probe it back, so
it is trusted again, as a ``never`` target is.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.health.targets import ProbeTarget
from shared.contracts.health import TargetState, TargetStateName
from shared.health.policy import ProbePolicy

RTT_GAIN = 0.125


@dataclass(slots=True)
class TargetHealth:
    target: ProbeTarget
    policy: ProbePolicy
    state: TargetStateName
    reason: str
    since: float
    checked_at: float | None = None
    rtt_ms: float | None = None
    srtt_ms: float | None = None
    until: float | None = None
    failures: int = 0
    successes: int = 0

    @classmethod
    def new(cls, target: ProbeTarget, policy: ProbePolicy, now: float) -> TargetHealth:
        """A target first seen is presumed up, as drouting and dispatcher start them."""
        return cls(target, policy, "up", "new target", now)

    @classmethod
    def restored(
        cls, target: ProbeTarget, policy: ProbePolicy, record: TargetState
    ) -> TargetHealth:
        """Resume from the stored record (a new prober taking over, a restart)."""
        return cls(
            target,
            policy,
            record.state,
            record.reason,
            record.since,
            record.checked_at,
            record.rtt_ms,
            record.srtt_ms,
            record.until,
        )

    def record(self) -> TargetState:
        target = self.target
        return TargetState(
            target=target.id,
            kind=target.kind,
            address=target.address,
            gateway_id=target.gateway_id,
            set_id=target.set_id,
            state=self.state,
            reason=self.reason,
            since=self.since,
            checked_at=self.checked_at,
            rtt_ms=self.rtt_ms,
            srtt_ms=self.srtt_ms,
            until=self.until,
        )

    @property
    def wants_probes(self) -> bool:
        mode = self.policy.mode
        if mode == "never" or self.state == "disabled" or self.until is not None:
            return False
        return mode == "always" or self.state != "up"

    def _enter(self, state: TargetStateName, reason: str, now: float) -> bool:
        if state == self.state:
            return False
        self.state, self.reason, self.since = state, reason, now
        self.failures = self.successes = 0
        return True

    def probe_answered(self, rtt_ms: float, reason: str, now: float) -> bool:
        self.checked_at = now
        self.rtt_ms = rtt_ms
        self.srtt_ms = (
            rtt_ms if self.srtt_ms is None else self.srtt_ms + RTT_GAIN * (rtt_ms - self.srtt_ms)
        )
        self.failures = 0  # an answer breaks the run: `failures_to_down` counts in a row
        if self.state in ("up", "disabled") or self.until is not None:
            return False
        self.successes += 1
        if self.successes >= self.policy.successes_to_up:
            return self._enter("up", reason, now)
        return False

    def probe_failed(self, reason: str, now: float) -> bool:
        self.checked_at = now
        if self.state == "disabled" or self.until is not None:
            return False
        failures = self.failures + 1
        self.successes = 0
        if failures >= self.policy.failures_to_down:
            changed = self._enter("down", reason, now)
        else:
            changed = self._enter("probing", reason, now) if self.state == "up" else False
        self.failures = 0 if self.state == "down" else failures
        return changed

    def edge_failed(self, reason: str, retry_after: int | None, now: float) -> bool:
        """An edge saw the target fail: hold it down for Retry-After, else suspect it."""
        if self.state == "disabled":
            return False
        if retry_after:
            self.until = now + retry_after
            self.state, self.reason, self.since = "down", reason, now
            self.failures = self.successes = 0
            return True
        if self.state != "up" or self.policy.mode == "never":
            return False
        return self._enter("probing", reason, now)

    def hold_expired(self, now: float) -> bool:
        """After Retry-After: probe it back in (or trust it again when never probed)."""
        if self.until is None or now < self.until:
            return False
        self.until = None
        if self.policy.mode == "never":
            return self._enter("up", "retry-after elapsed", now)
        return self._enter("probing", "retry-after elapsed", now)

    def adopt_policy(self, policy: ProbePolicy, now: float) -> bool:
        """Take a changed policy; with mode ``never`` a probed-down target is up again.

        A Retry-After hold stays until it elapses (an edge's report, not a probe).
        """
        self.policy = policy
        if policy.mode != "never" or self.until is not None:
            return False
        if self.state not in ("down", "probing"):
            return False
        return self._enter("up", "not probed (mode never)", now)

    def disable(self, now: float) -> bool:
        self.until = None
        return self._enter("disabled", "disabled by operator", now)

    def enable(self, now: float) -> bool:
        if self.state != "disabled":
            return False
        state: TargetStateName = "up" if self.policy.mode == "never" else "probing"
        return self._enter(state, "enabled by operator", now)
