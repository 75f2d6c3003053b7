"""The in-memory routing index: drouting matching with no I/O and flat cost.

Per caller group, a dict maps each prefix to its rules (one rule, or a tuple
sorted by priority). A lookup probes the number's own prefixes from the longest
down to the empty one, so its cost depends on the number's length, never on the
table's size. Memory is kept small for a million rules: slotted records, the
prefix string shared between the dict key and the rule, interned groups and
target lists.

Gateways and carriers are resolved at lookup time, so changing a gateway never
touches the rules that name it; targets that are missing or disabled are skipped
(a dangling reference routes to the remaining targets, as drouting does).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice

from services.routing.table.dialplan import CompiledDialplan
from services.routing.table.model import Carrier, Dialplan, Gateway, Kind, Record, Rule
from services.routing.table.timewindow import TimeWindow


class GatewayTarget:
    __slots__ = ("address", "attributes", "description", "enabled", "id", "prefix", "strip")

    def __init__(self, gateway_id: str, gateway: Gateway) -> None:
        self.id = gateway_id
        self.address = gateway.address
        self.strip = gateway.strip
        self.prefix = gateway.prefix
        self.attributes = gateway.attributes
        self.description = gateway.description
        self.enabled = gateway.enabled

    def dial(self, number: str) -> str:
        """The number as this gateway wants it: ``strip`` digits off, then ``prefix`` on.

        A leading ``+`` is not a digit: stripping removes it along with the digits.
        """
        if self.strip:
            digits = number[1:] if number[:1] == "+" else number
            number = digits[self.strip :]
        return self.prefix + number if self.prefix else number


class CarrierTargets:
    __slots__ = ("enabled", "id", "members", "use_first", "weighted", "weights")

    def __init__(self, carrier_id: str, carrier: Carrier) -> None:
        self.id = carrier_id
        self.members = tuple(sys.intern(member.id) for member in carrier.gateways)
        self.weights = tuple(member.weight for member in carrier.gateways)
        self.weighted = carrier.weighted
        self.use_first = carrier.use_first
        self.enabled = carrier.enabled

    def order(self, rng: random.Random) -> tuple[str, ...]:
        """Member gateway ids in the order to try them for one call.

        Weighted: each position is drawn in proportion to the weights of the members
        not yet drawn (sorting by ``u ** (1 / w)`` gives exactly that distribution).
        """
        if not self.weighted:
            return self.members
        keyed = sorted(
            zip(self.members, self.weights, strict=True),
            key=lambda item: rng.random() ** (1.0 / item[1]) if item[1] else -1.0,
            reverse=True,
        )
        return tuple(member for member, _ in keyed)


class CompiledRule:
    __slots__ = ("groups", "id", "prefix", "priority", "targets", "window")

    def __init__(
        self,
        rule_id: str,
        *,
        groups: tuple[str, ...],
        prefix: str,
        priority: int,
        window: TimeWindow | None,
        targets: tuple[str, ...],
    ) -> None:
        self.id = rule_id
        self.groups = groups
        self.prefix = prefix
        self.priority = priority
        self.window = window
        self.targets = targets


class Match:
    """A lookup's answer: the rule and the gateways to try, in order."""

    __slots__ = ("gateways", "number", "rule")

    def __init__(self, rule: CompiledRule, number: str, gateways: tuple[GatewayTarget, ...]):
        self.rule = rule
        self.number = number
        self.gateways = gateways


RuleEntry = CompiledRule | tuple[CompiledRule, ...]


class RoutingIndex:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._groups: dict[str, dict[str, RuleEntry]] = {}
        self._rules: dict[str, CompiledRule] = {}
        self._max_prefix = 0
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._resolved: dict[tuple[str, ...], tuple[GatewayTarget, ...]] = {}
        self.gateways: dict[str, GatewayTarget] = {}
        self.carriers: dict[str, CarrierTargets] = {}
        self.dialplans: dict[str, CompiledDialplan] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def rule(self, rule_id: str) -> CompiledRule | None:
        return self._rules.get(rule_id)

    # -- changes -------------------------------------------------------------

    def put(self, kind: Kind, record_id: str, record: Record) -> None:
        if isinstance(record, Rule):
            self._put_rule(record_id, record)
        elif isinstance(record, Gateway):
            self.gateways[record_id] = GatewayTarget(sys.intern(record_id), record)
            self._resolved.clear()
        elif isinstance(record, Carrier):
            self.carriers[record_id] = CarrierTargets(record_id, record)
            self._resolved.clear()
        elif isinstance(record, Dialplan):
            self.dialplans[record_id] = CompiledDialplan(record)
        else:  # pragma: no cover - RECORD_TYPES is closed
            raise TypeError(f"not a {kind}: {type(record).__name__}")

    def remove(self, kind: Kind, record_id: str) -> None:
        if kind == "rule":
            self._remove_rule(record_id)
        elif kind == "gateway":
            self.gateways.pop(record_id, None)
            self._resolved.clear()
        elif kind == "carrier":
            self.carriers.pop(record_id, None)
            self._resolved.clear()
        else:
            self.dialplans.pop(record_id, None)

    def _put_rule(self, rule_id: str, rule: Rule) -> None:
        if rule_id in self._rules:
            self._remove_rule(rule_id)
        compiled = CompiledRule(
            rule_id,
            groups=self._intern(rule.groups),
            prefix=rule.prefix,
            priority=rule.priority,
            window=rule.time,
            targets=self._intern(rule.gateways),
        )
        self._rules[rule_id] = compiled
        self._max_prefix = max(self._max_prefix, len(rule.prefix))
        for group in compiled.groups:
            table = self._groups.setdefault(group, {})
            entry = table.get(rule.prefix)
            if entry is None:
                table[rule.prefix] = compiled
            else:
                rules = (entry, compiled) if isinstance(entry, CompiledRule) else (*entry, compiled)
                table[rule.prefix] = tuple(sorted(rules, key=_precedence))

    def _remove_rule(self, rule_id: str) -> None:
        compiled = self._rules.pop(rule_id, None)
        if compiled is None:
            return
        for group in compiled.groups:
            table = self._groups[group]
            entry = table[compiled.prefix]
            if isinstance(entry, CompiledRule):
                del table[compiled.prefix]
            else:
                rest = tuple(rule for rule in entry if rule is not compiled)
                table[compiled.prefix] = rest[0] if len(rest) == 1 else rest

    def _intern(self, values: tuple[str, ...]) -> tuple[str, ...]:
        return self._interned.setdefault(values, tuple(sys.intern(value) for value in values))

    # -- lookups -------------------------------------------------------------

    def match(self, number: str, group: str = "0") -> Match | None:
        """The route for ``number`` in ``group``, or ``None`` when nothing routes it.

        The longest prefix whose rules have one valid now wins; when time windows
        rule out every rule of a prefix, shorter prefixes are tried.
        """
        table = self._groups.get(group)
        if table is None:
            return None
        digits = number[1:] if number[:1] == "+" else number
        length = min(len(digits), self._max_prefix)
        now: datetime | None = None
        while length >= 0:
            entry = table.get(digits[:length])
            if entry is not None:
                if isinstance(entry, CompiledRule):
                    if entry.window is None:
                        return Match(entry, number, self._gateways(entry.targets))
                    entry = (entry,)
                for rule in entry:
                    if rule.window is not None:
                        now = now or self._clock()
                        if not rule.window.matches(now):
                            continue
                    return Match(rule, number, self._gateways(rule.targets))
            length -= 1
        return None

    def _gateways(self, targets: tuple[str, ...]) -> tuple[GatewayTarget, ...]:
        resolved = self._resolved.get(targets)
        if resolved is not None:
            return resolved
        ordered: list[GatewayTarget] = []
        stable = True
        for target in targets:
            if target[0] == "#":
                carrier = self.carriers.get(target[1:])
                if carrier is None or not carrier.enabled:
                    continue
                stable = stable and not carrier.weighted
                members = _enabled(self.gateways, carrier.order(self._rng))
                if carrier.use_first:
                    ordered.extend(islice(members, 1))
                else:
                    ordered.extend(members)
            else:
                ordered.extend(_enabled(self.gateways, (target,)))
        result = tuple(dict.fromkeys(ordered))
        if stable:
            self._resolved[targets] = result
        return result

    def translate(self, dialplan_id: str, number: str) -> str:
        """``number`` through dialplan ``dialplan_id``; unchanged when no rule matches it.

        Raises ``KeyError`` for an unknown dialplan.
        """
        translated = self.dialplans[dialplan_id].translate(number)
        return number if translated is None else translated

    def rules(self) -> Iterator[CompiledRule]:
        return iter(self._rules.values())


def _precedence(rule: CompiledRule) -> tuple[int, str]:
    return (-rule.priority, rule.id)


def _enabled(gateways: dict[str, GatewayTarget], ids: tuple[str, ...]) -> Iterator[GatewayTarget]:
    for gateway_id in ids:
        gateway = gateways.get(gateway_id)
        if gateway is not None and gateway.enabled:
            yield gateway
