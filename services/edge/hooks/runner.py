"""Loading the operator's routing hook once, and running it within a time budget.

Why no thread pool: a thread cannot be stopped in Python, so a hook stuck
forever would hold its pool thread forever anyway and the pool would drain
after a few calls; and handing every call to a thread costs tens of
microseconds plus GIL ping-pong on the hot path.  So the hook runs inline
and is timed with `perf_counter`: a call that ran past the budget has its
result discarded (the default decision is used) and is reported, exactly
like a call that raised.  The time is lost either way; what the budget buys
is that a slow hook cannot silently change routing, and shows up in the
counters and logs so the operator fixes it.  A hook that never returns
blocks its worker: only a process watchdog (the edge's supervisor
restarting a worker whose event loop stalls) can cut it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.edge.hooks.decision import Decision, RequestView, Target

log = logging.getLogger("callmesh.edge.hooks")

HookFunction = Callable[[RequestView, Decision], Decision | None]
Outcome = Literal["kept", "changed", "error", "timeout", "invalid"]
FAILURES: tuple[Outcome, ...] = ("error", "timeout", "invalid")
_LOGGED_IN_FULL = 10
_LOG_EVERY = 100


class HookLoadError(ValueError):
    """The configured hook cannot be used; the edge refuses to start with this reason."""


class HookSettings(BaseModel):
    """`CALLMESH_ROUTING_HOOK` and `CALLMESH_ROUTING_HOOK_BUDGET_MS`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    module: str | None = None
    budget_ms: float = Field(default=5.0, gt=0, le=1000)

    def load(self) -> RoutingHook | None:
        """The hook, or None when none is configured."""
        if not self.module:
            return None
        return RoutingHook.load(self.module, self.budget_ms / 1000)


@dataclass(frozen=True, slots=True)
class HookResult:
    decision: Decision
    outcome: Outcome
    elapsed: float
    """Seconds the hook ran."""


class RoutingHook:
    """One hook function with its budget; `counts` holds how each call ended."""

    def __init__(
        self,
        function: HookFunction,
        name: str,
        budget: float = 0.005,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if budget <= 0:
            raise ValueError("the hook budget must be positive")
        self._function = function
        self.name = name
        self.budget = budget
        self._clock = clock
        self.counts: Counter[Outcome] = Counter()

    @classmethod
    def load(cls, spec: str, budget: float = 0.005) -> RoutingHook:
        """`spec` is `package.module` (function `route`) or `package.module:function`."""
        module_name, _, function_name = spec.strip().partition(":")
        function_name = function_name or "route"
        try:
            module = importlib.import_module(module_name)
        except Exception as error:
            raise HookLoadError(f"routing hook module {module_name!r}: {error}") from None
        function = getattr(module, function_name, None)
        if not callable(function):
            raise HookLoadError(f"routing hook {module_name}:{function_name} is not a function")
        return cls(function, f"{module_name}:{function_name}", budget)

    def run(self, request: RequestView, decision: Decision) -> HookResult:
        """The hook's decision, or `decision` itself when the hook declined, failed or overran."""
        start = self._clock()
        try:
            result = self._function(request, decision)
        except Exception as error:
            return self._fallback(decision, "error", self._clock() - start, repr(error))
        elapsed = self._clock() - start
        if elapsed > self.budget:
            return self._fallback(decision, "timeout", elapsed, "over budget")
        if result is None or result == decision:
            self.counts["kept"] += 1
            return HookResult(decision, "kept", elapsed)
        problem = _problem(result)
        if problem is not None:
            return self._fallback(decision, "invalid", elapsed, problem)
        self.counts["changed"] += 1
        assert isinstance(result, Decision)
        return HookResult(result, "changed", elapsed)

    def _fallback(
        self, decision: Decision, outcome: Outcome, elapsed: float, detail: str
    ) -> HookResult:
        self.counts[outcome] += 1
        failures = sum(self.counts[name] for name in FAILURES)
        if failures <= _LOGGED_IN_FULL or failures % _LOG_EVERY == 0:
            log.warning(
                "routing hook %s: %s (%s) after %.2f ms; default decision used (%d failures)",
                self.name,
                outcome,
                detail,
                elapsed * 1000,
                failures,
            )
        return HookResult(decision, outcome, elapsed)


def _problem(result: object) -> str | None:
    if not isinstance(result, Decision):
        return f"returned {type(result).__name__}, not Decision or None"
    if not isinstance(result.targets, tuple) or not all(
        isinstance(target, Target) for target in result.targets
    ):
        return "targets must be a tuple of Target"
    if not result.targets and result.reject is None:
        return "no targets and no reject"
    return None
