"""Scanner detection: the User-Agents of SIP scanning tools, and extension sweeps from strangers.

Two signs, checked only for untrusted sources:
- a User-Agent (or Server) of a known scanning tool (sipvicious' svmap/svwar
  announce `friendly-scanner`, then sipcli, VaxSIPUserAgent, sundayddr, ...);
- a sweep: one source addressing more than `sweep_targets` distinct users
  (Request-URI user, or To user for REGISTER) with OPTIONS, REGISTER or
  INVITE within `sweep_window` seconds, which is how extensions are enumerated.

A source seen doing either is flagged for `flag_time` and its requests that
look like a scanner's get `action`: `drop` (silence: the tool concludes
nothing listens here, the cheapest and the default) or `answer` (the edge
replies with a stateless 403 without authenticating or routing, for
operators who want scanners to see a SIP server refusing).  Which requests
of a flagged source still pass (credentials, in-dialog) is the edge's
`services.edge.policy.guard` decision.  Memory is bounded like the flood
detector's: at most `max_sources` sweep counters, the oldest evicted.
No clock inside: pass `now`.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCANNER_USER_AGENTS: Final = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sundayddr",
    "sip-scan",
    "sipscan",
    "iwar",
    "pplsip",
    "smap",
    "svmap",
    "svwar",
    "sipsak-scan",
    "voip sip",
    "scanner",
)
"""Lower-case substrings; matched anywhere in the User-Agent."""
_SWEEP_METHODS: Final = frozenset({"OPTIONS", "REGISTER", "INVITE"})


class ScannerSettings(BaseModel):
    """`CALLMESH_SCANNER_*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_agents: tuple[str, ...] = SCANNER_USER_AGENTS
    action: Literal["drop", "answer"] = "drop"
    sweep_targets: int = Field(default=10, ge=2)
    sweep_window: float = Field(default=60.0, gt=0)
    flag_time: float = Field(default=3600.0, gt=0)
    max_sources: int = Field(default=50_000, ge=16)

    @field_validator("user_agents")
    @classmethod
    def _lower(cls, agents: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(agent.lower() for agent in agents if agent)


class ScanVerdict(enum.IntEnum):
    PASS = 0
    ANSWER = 1
    """Reply with a stateless 403; no authentication, no routing."""
    DROP = 2


class _Sweep:
    __slots__ = ("start", "targets")

    def __init__(self, start: float) -> None:
        self.start = start
        self.targets: set[str] = set()


class ScannerDetector:
    __slots__ = ("_flagged", "_sweeps", "_verdict", "settings")

    def __init__(self, settings: ScannerSettings) -> None:
        self.settings = settings
        self._verdict = ScanVerdict.DROP if settings.action == "drop" else ScanVerdict.ANSWER
        self._sweeps: dict[str, _Sweep] = {}
        self._flagged: dict[str, float] = {}

    def check(
        self, host: str, method: str, user_agent: str | None, target: str | None, now: float
    ) -> ScanVerdict:
        """Classify one request from an untrusted source (do not call it for trusted ones)."""
        until = self._flagged.get(host)
        if until is not None:
            if now < until:
                return self._verdict
            del self._flagged[host]
        if user_agent is not None and self.is_scanner_agent(user_agent):
            self._flag(host, now)
            return self._verdict
        if target is not None and method in _SWEEP_METHODS and self._sweeping(host, target, now):
            self._flag(host, now)
            return self._verdict
        return ScanVerdict.PASS

    def is_scanner_agent(self, user_agent: str) -> bool:
        agent = user_agent.lower()
        return any(pattern in agent for pattern in self.settings.user_agents)

    def is_flagged(self, host: str, now: float) -> bool:
        until = self._flagged.get(host)
        return until is not None and now < until

    def flagged_hosts(self) -> list[str]:
        return list(self._flagged)

    def clear(self, host: str) -> bool:
        """Lift `host`'s flag and forget its sweep; False when it had neither."""
        was_flagged = self._flagged.pop(host, None) is not None
        return self._sweeps.pop(host, None) is not None or was_flagged

    def _sweeping(self, host: str, target: str, now: float) -> bool:
        sweep = self._sweeps.get(host)
        if sweep is None or now - sweep.start >= self.settings.sweep_window:
            if sweep is None and len(self._sweeps) >= self.settings.max_sources:
                del self._sweeps[next(iter(self._sweeps))]
            sweep = self._sweeps[host] = _Sweep(now)
        targets = sweep.targets
        targets.add(target)
        return len(targets) > self.settings.sweep_targets

    def _flag(self, host: str, now: float) -> None:
        self._sweeps.pop(host, None)
        flagged = self._flagged
        if host not in flagged and len(flagged) >= self.settings.max_sources:
            del flagged[next(iter(flagged))]
        flagged[host] = now + self.settings.flag_time
