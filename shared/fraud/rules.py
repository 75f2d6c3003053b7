"""Fraud rules as operators write them, and their matching per call: plain values, no I/O.

A rule watches one caller (a subscriber or a peer) or every caller, for the
numbers that start with one of its prefixes (a premium-rate list is the usual
case), and holds it to thresholds over sliding windows, each with a warning
and a critical level. The rules are routing-table records (kind ``fraud_rule``:
API, command queue, events, snapshot), so every edge holds them in memory and
asks Redis (:mod:`shared.fraud.store`) only for a call a rule covers.

The account of a call is ``peer:<id>`` when its source is a peer's, else
``subscriber:<user@host>`` of its From: counts and blocks belong to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from shared.model import InputModel

METRICS: Final = ("calls_per_minute", "concurrent", "sequential", "minutes_per_day")
"""The thresholds a rule may set, in the order the store's script reads them."""
Metric = Literal["calls_per_minute", "concurrent", "sequential", "minutes_per_day"]
Block = Literal["none", "account", "prefix"]


def _lower_host(caller: str) -> str:
    """A subscriber's host in lower case, as the edge writes a call's account."""
    user, at, host = caller.rpartition("@")
    return f"{user}{at}{host.lower()}" if at else caller


CallerScope = Annotated[
    str,
    StringConstraints(
        pattern=r"^(any|peer:[A-Za-z0-9_.:-]{1,64}|subscriber:[^\s@]{1,128}@[A-Za-z0-9.:\[\]-]{1,253})$"
    ),
    AfterValidator(_lower_host),
]
"""``any``, ``peer:<id>`` or ``subscriber:<user@host>`` (the host compared in lower case)."""
FraudPrefix = Annotated[str, StringConstraints(pattern=r"^[0-9+*#]{0,32}$")]
Threshold = Annotated[int, Field(ge=1, le=1_000_000)]


class Level(InputModel):
    """A warning and a critical level (either may be absent); warning below critical."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: Threshold | None = None
    critical: Threshold | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Level:
        if self.warning is None and self.critical is None:
            raise ValueError("set warning, critical or both")
        if self.warning is not None and self.critical is not None and self.warning >= self.critical:
            raise ValueError("warning must be below critical")
        return self


class FraudRuleBody(InputModel):
    """The fields of a fraud rule (the routing table's ``FraudRule`` record adds its metadata)."""

    caller: CallerScope = "any"
    prefixes: Annotated[tuple[FraudPrefix, ...], Field(min_length=1, max_length=1000)]
    calls_per_minute: Level | None = None
    """New calls in the last minute (a sliding window)."""
    concurrent: Level | None = None
    """Calls up at once (admitted and not yet ended)."""
    sequential: Level | None = None
    """Calls in a row to the same prefix of this rule (a call to another of its prefixes
    starts a new run)."""
    minutes_per_day: Level | None = None
    """Minutes talked in the last 24 hours (hour buckets), counted when calls end."""
    block: Block = "none"
    """At a critical level: also block the account, or its calls to the prefix, until an
    operator unblocks it."""
    enabled: bool = True

    @model_validator(mode="after")
    def _some_threshold(self) -> FraudRuleBody:
        if all(getattr(self, metric) is None for metric in METRICS):
            raise ValueError(f"set at least one of {', '.join(METRICS)}")
        return self

    def levels(self) -> tuple[int, ...]:
        """(warning, critical) per metric in `METRICS` order, 0 for none: the script's arguments."""
        found: list[int] = []
        for metric in METRICS:
            level: Level | None = getattr(self, metric)
            found += [0, 0] if level is None else [level.warning or 0, level.critical or 0]
        return tuple(found)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule a call falls under: ``prefix`` is the longest of its prefixes the number
    starts with, None when the rule covers the caller but not this number (the call is
    still checked against the account's blocks)."""

    rule_id: str
    prefix: str | None
    levels: tuple[int, ...]
    block: Block


@dataclass(frozen=True, slots=True)
class FraudQuery:
    """What a new call asks the fraud store: its account's blocks, and the counts of every
    rule whose prefix it matches."""

    call_id: str
    account: str
    number: str
    matches: tuple[RuleMatch, ...]


@dataclass(frozen=True, slots=True)
class Crossing:
    """A threshold a count reached: ``value`` went from below ``threshold`` to at least it."""

    rule_id: str
    metric: Metric
    level: Literal["warning", "critical"]
    value: float
    threshold: int
    prefix: str
    block_id: str | None = None
    """The block this critical level set, if its rule blocks, and what it holds."""
    blocked: Literal["account", "prefix"] | None = None


@dataclass(frozen=True, slots=True)
class FraudVerdict:
    """``block_id`` set: refused by that block (``blocked`` says what it holds: the
    account, or its calls to a prefix); ``crossings``: the thresholds this call reached."""

    block_id: str | None = None
    blocked: str = ""
    crossings: tuple[Crossing, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.block_id is None


class FraudIndex:
    """The enabled fraud rules by the caller they watch (see the module docstring)."""

    __slots__ = ("_by_caller", "_rules")

    def __init__(self) -> None:
        self._rules: dict[str, FraudRuleBody] = {}
        self._by_caller: dict[str, list[_Watching]] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def items(self) -> list[tuple[str, FraudRuleBody]]:
        return sorted(self._rules.items())

    def put(self, rule_id: str, rule: FraudRuleBody) -> None:
        self._rules[rule_id] = rule
        self._rebuild()

    def remove(self, rule_id: str) -> None:
        if self._rules.pop(rule_id, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        found: dict[str, list[_Watching]] = {}
        for rule_id, rule in sorted(self._rules.items()):
            if rule.enabled:
                watching = _Watching(rule_id, frozenset(rule.prefixes), rule.levels(), rule.block)
                found.setdefault(rule.caller, []).append(watching)
        self._by_caller = found

    def query(self, call_id: str, account: str, number: str) -> FraudQuery | None:
        """The call's query, or None when no rule watches its account (no round trip)."""
        by_caller = self._by_caller
        if not by_caller:
            return None
        rules = by_caller.get(account, []) + by_caller.get("any", [])
        if not rules:
            return None
        matches = []
        for rule in rules:
            prefixes = rule.prefixes
            prefix = next(
                (number[:n] for n in range(len(number), -1, -1) if number[:n] in prefixes), None
            )
            matches.append(RuleMatch(rule.rule_id, prefix, rule.levels, rule.block))
        return FraudQuery(call_id, account, number, tuple(matches))


@dataclass(frozen=True, slots=True)
class _Watching:
    """An enabled rule as the index keeps it: what each call needs, computed once."""

    rule_id: str
    prefixes: frozenset[str]
    levels: tuple[int, ...]
    block: Block
