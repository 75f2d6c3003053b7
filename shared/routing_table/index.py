"""The in-memory routing index: drouting matching with no I/O and flat cost.

Per caller group, a :class:`PrefixTable` maps each prefix to its rules (one
rule, or a tuple sorted by priority) and finds the longest prefix of a number in
one array index plus a scan of a few packed integers, whatever the table's size.
Memory is kept small for a million rules: small slotted records, the prefix
string shared between the table and the rule, interned groups, and target lists
shared by all the rules naming them. Each target list memoises its resolved
gateways (until a gateway or carrier changes), so a lookup reads one cold object
(its rule) and allocates nothing but its answer.

Gateways and carriers are resolved at lookup time, so changing a gateway never
touches the rules that name it; targets that are missing or disabled are skipped
(a dangling reference routes to the remaining targets, as drouting does).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain, islice

from shared.fraud.rules import FraudIndex
from shared.routing_table.compiled import (
    CarrierTargets,
    CompiledRule,
    GatewayTarget,
    RuleEntry,
    TargetList,
    first_rule,
    rules_of,
)
from shared.routing_table.dialplan import CompiledDialplan
from shared.routing_table.manipulations import ManipulationIndex
from shared.routing_table.model import (
    Carrier,
    Dialplan,
    FraudRule,
    Gateway,
    Kind,
    Limits,
    Manipulation,
    MediaRelay,
    Peer,
    Record,
    Rule,
)
from shared.routing_table.peers import PeerIndex
from shared.routing_table.prefix_layout import TAG_MASK
from shared.routing_table.prefixes import PrefixTable
from shared.routing_table.timewindow import TimeWindow
from shared.routing_table.topology import TargetTopology

Located = tuple["PrefixTable[RuleEntry] | CompiledRule", str, TargetList]
"""(where the rule is, the digits looked up, its target list): the rule is
``rule_at(where, digits)`` (see :meth:`RoutingIndex.locate`)."""


class RoutingIndex:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._groups: dict[str, PrefixTable[RuleEntry]] = {}
        self._rules: dict[str, CompiledRule] = {}
        self._epoch = 0
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._target_lists: dict[tuple[str, ...], TargetList] = {}
        self._listed: list[TargetList | None] = [None]
        self.gateways: dict[str, GatewayTarget] = {}
        self.carriers: dict[str, CarrierTargets] = {}
        self.dialplans: dict[str, CompiledDialplan] = {}
        self.manipulations = ManipulationIndex()
        self.peers = PeerIndex()
        self.fraud = FraudIndex()
        self.rule_topology: dict[str, TargetTopology] = {}
        """Topology hiding of the rules that set it (rarely any: kept beside the rules)."""
        self.rule_media: dict[str, MediaRelay] = {}
        """The media relay policy of the rules that set one (kept beside the rules, too)."""
        self.rule_limits: dict[str, Limits] = {}
        """The limits of the rules (destination prefixes) that set them (beside the rules)."""
        self.b2bua_rules: set[str] = set()
        """The rules whose calls the edge carries as a B2BUA (``mode: b2bua``; rare too)."""
        self.b2bua_gateways: set[str] = set()
        """The gateways with ``mode: b2bua`` (so that, with neither, nothing more is asked)."""
        self._limited: set[tuple[str, str]] = set()
        """(kind, id) of the gateways, carriers and peers that carry limits."""
        self._carrier_caps: dict[str, tuple[tuple[str, int], ...]] = {}
        self._caps_epoch = -1

    def __len__(self) -> int:
        return len(self._rules)

    # -- changes -------------------------------------------------------------

    @property
    def limited(self) -> bool:
        """Whether any record of the table carries limits (cheap: asked per BYE)."""
        return bool(self._limited or self.rule_limits)

    def put(self, kind: Kind, record_id: str, record: Record) -> None:
        if isinstance(record, Gateway | Carrier | Peer):
            if record.limits is not None:
                self._limited.add((kind, record_id))
            else:
                self._limited.discard((kind, record_id))
        if isinstance(record, Rule):
            self._put_rule(record_id, record)
        elif isinstance(record, Gateway):
            self.gateways[record_id] = GatewayTarget(sys.intern(record_id), record)
            if record.mode == "b2bua":
                self.b2bua_gateways.add(record_id)
            else:
                self.b2bua_gateways.discard(record_id)
            self._gateways_changed()
        elif isinstance(record, Carrier):
            self.carriers[record_id] = CarrierTargets(record_id, record)
            self._gateways_changed()
        elif isinstance(record, Dialplan):
            self.dialplans[record_id] = CompiledDialplan(record)
        elif isinstance(record, Manipulation):
            self.manipulations.put(record.rule_set(record_id))
        elif isinstance(record, Peer):
            self.peers.put(record_id, record)
        elif isinstance(record, FraudRule):
            self.fraud.put(record_id, record)
        else:  # pragma: no cover - RECORD_TYPES is closed
            raise TypeError(f"not a {kind}: {type(record).__name__}")

    def remove(self, kind: Kind, record_id: str) -> None:
        self._limited.discard((kind, record_id))
        if kind == "rule":
            self.rule_topology.pop(record_id, None)
            self.rule_media.pop(record_id, None)
            self.rule_limits.pop(record_id, None)
            self.b2bua_rules.discard(record_id)
            self._remove_rule(record_id)
        elif kind == "gateway":
            self.gateways.pop(record_id, None)
            self.b2bua_gateways.discard(record_id)
            self._gateways_changed()
        elif kind == "carrier":
            self.carriers.pop(record_id, None)
            self._gateways_changed()
        elif kind == "manipulation":
            self.manipulations.remove(record_id)
        elif kind == "peer":
            self.peers.remove(record_id)
        elif kind == "fraud_rule":
            self.fraud.remove(record_id)
        else:
            self.dialplans.pop(record_id, None)

    def _gateways_changed(self) -> None:
        self._epoch += 1

    def carrier_caps(self, gateway_id: str) -> tuple[tuple[str, int], ...]:
        """(carrier id, channel cap) of every enabled capped carrier the gateway belongs to;
        recomputed once after gateways or carriers change, then a dict probe per gateway."""
        if self._caps_epoch != self._epoch:
            caps: dict[str, list[tuple[str, int]]] = {}
            for carrier in self.carriers.values():
                if carrier.channels is not None and carrier.enabled:
                    for member in dict.fromkeys(carrier.members):
                        caps.setdefault(member, []).append((carrier.id, carrier.channels))
            self._carrier_caps = {member: tuple(found) for member, found in caps.items()}
            self._caps_epoch = self._epoch
        return self._carrier_caps.get(gateway_id, ())

    def compile(
        self,
        rule_id: str,
        *,
        groups: tuple[str, ...],
        prefix: str,
        priority: int,
        window: TimeWindow | None,
        targets: tuple[str, ...],
    ) -> CompiledRule:
        """A rule in the index's shared form (interned groups, shared target lists)."""
        target_list = self._target_lists.get(targets)
        if target_list is None:
            ids = tuple(sys.intern(target) for target in targets)
            target_list = TargetList(ids, len(self._listed))
            self._target_lists[ids] = target_list
            self._listed.append(target_list)
        return CompiledRule(
            rule_id,
            groups=self._intern(groups),
            prefix=prefix,
            priority=priority,
            window=window,
            targets=target_list,
        )

    def load_rules(self, rules: Iterable[CompiledRule]) -> None:
        """Fill an index that has no rules yet in one pass (an edge's snapshot load).

        A rule id given twice keeps its last occurrence, as a later write would.
        """
        if self._rules:
            raise ValueError("load_rules needs an index without rules")
        for rule in rules:
            self._rules[rule.id] = rule
        loaded = self._rules.values()
        for group in {group for groups in {rule.groups for rule in loaded} for group in groups}:
            table = self._new_table()
            table.bulk(((rule.prefix, rule) for rule in loaded if group in rule.groups), _with)
            self._groups[group] = table

    def compile_rule(self, rule_id: str, rule: Rule) -> CompiledRule:
        if rule.topology_hiding is not None:
            self.rule_topology[rule_id] = rule.topology_hiding
        else:
            self.rule_topology.pop(rule_id, None)
        if rule.media_relay is not None:
            self.rule_media[rule_id] = rule.media_relay
        else:
            self.rule_media.pop(rule_id, None)
        if rule.limits is not None:
            self.rule_limits[rule_id] = rule.limits
        else:
            self.rule_limits.pop(rule_id, None)
        if rule.mode == "b2bua":
            self.b2bua_rules.add(rule_id)
        else:
            self.b2bua_rules.discard(rule_id)
        return self.compile(
            rule_id,
            groups=rule.groups,
            prefix=rule.prefix,
            priority=rule.priority,
            window=rule.time,
            targets=rule.gateways,
        )

    def _put_rule(self, rule_id: str, rule: Rule) -> None:
        self.put_compiled(self.compile_rule(rule_id, rule))

    def put_compiled(self, compiled: CompiledRule) -> None:
        """Add or replace one rule (see :meth:`compile`)."""
        if compiled.id in self._rules:
            self._remove_rule(compiled.id)
        self._rules[compiled.id] = compiled
        for group in compiled.groups:
            table = self._groups.get(group)
            if table is None:
                table = self._groups[group] = self._new_table()
            entry = table.get(compiled.prefix)
            table.set(compiled.prefix, compiled if entry is None else _with(entry, compiled))

    def _remove_rule(self, rule_id: str) -> None:
        compiled = self._rules.pop(rule_id, None)
        if compiled is None:
            return
        for group in compiled.groups:
            table = self._groups[group]
            entry = table.get(compiled.prefix)
            if isinstance(entry, CompiledRule) or entry is None:
                table.set(compiled.prefix, None)
            else:
                rest = tuple(rule for rule in entry if rule is not compiled)
                table.set(compiled.prefix, rest[0] if len(rest) == 1 else rest)

    @staticmethod
    def _new_table() -> PrefixTable[RuleEntry]:
        return PrefixTable(_tag_of)

    def _intern(self, values: tuple[str, ...]) -> tuple[str, ...]:
        interned = self._interned.get(values)
        if interned is None:  # once per distinct tuple; a million rules share a few
            interned = self._interned[values] = tuple(sys.intern(value) for value in values)
        return interned

    # -- lookups -------------------------------------------------------------

    def locate(self, number: str, group: str = "0") -> Located | None:
        """Where the rule that routes ``number`` in ``group`` now is, and its target list.

        The longest prefix whose rules have one valid now wins; when time windows
        rule out every rule of a prefix, shorter prefixes are tried. Only the
        number's leading digits (after an optional ``+``) can match a prefix.

        Why not the rule itself: in a big table the rule is a cold object, and
        reading it is most of a lookup's cost. A prefix whose first rule has no time
        window is answered from the tag in the table alone; the rule is
        ``rule_at(where, digits)``, for the caller to read when (and if) it needs
        it, before the index next changes (it looks the digits up again, in lines
        the lookup has just brought into the cache).
        """
        table = self._groups.get(group)
        if table is None:
            return None
        digits = number[1:] if number[:1] == "+" else number
        if not (digits.isdigit() and digits.isascii()):
            digits = _leading_digits(digits)
        found = table.match_tag(digits)
        if not found:
            return None
        tag = found & TAG_MASK
        if tag:
            return table, digits, self._listed[tag]  # type: ignore[return-value]
        entry: RuleEntry = table.find(digits)  # type: ignore[assignment]
        rule = self._valid_now(entry, table.chain(digits, len(first_rule(entry).prefix)))
        return None if rule is None else (rule, digits, rule.targets)

    def _valid_now(self, entry: RuleEntry, shorter: Iterator[RuleEntry]) -> CompiledRule | None:
        """The first rule valid now, in ``entry`` then in the ``shorter`` prefixes' entries."""
        now = self._clock()
        for candidate in chain((entry,), shorter):
            for rule in rules_of(candidate):
                if rule.window is None or rule.window.matches(now):
                    return rule
        return None

    def resolve(self, targets: TargetList) -> tuple[GatewayTarget, ...]:
        """The target list as enabled gateways in order to try, carriers expanded."""
        if targets.epoch == self._epoch:
            return targets.gateways
        gateways, stable = self._gateways(targets.ids)
        if stable:
            targets.gateways, targets.epoch = gateways, self._epoch
        return gateways

    def _gateways(self, targets: tuple[str, ...]) -> tuple[tuple[GatewayTarget, ...], bool]:
        """The gateways and whether they are the same on every call (no weighted carrier)."""
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
        return tuple(dict.fromkeys(ordered)), stable

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


def _with(entry: RuleEntry, added: RuleEntry) -> RuleEntry:
    """The prefix's rules with the ``added`` one(s), highest precedence first."""
    return tuple(sorted((*rules_of(entry), *rules_of(added)), key=_precedence))


def _tag_of(entry: RuleEntry) -> int:
    """A prefix's tag: the target list of its first rule when that has no time window
    (so it always answers), else 0 (the rules must be read)."""
    first = first_rule(entry)
    return first.targets.number if first.window is None else 0


def rule_at(where: PrefixTable[RuleEntry] | CompiledRule, digits: str) -> CompiledRule:
    """The rule a lookup found (see :meth:`RoutingIndex.locate`)."""
    if type(where) is CompiledRule:
        return where
    return first_rule(where.find(digits))  # type: ignore[union-attr, arg-type]


def _leading_digits(text: str) -> str:
    """The ASCII digits ``text`` starts with: the only part a digit prefix can match."""
    for position, char in enumerate(text):
        if not ("0" <= char <= "9"):
            return text[:position]
    return text


def _enabled(gateways: dict[str, GatewayTarget], ids: tuple[str, ...]) -> Iterator[GatewayTarget]:
    for gateway_id in ids:
        gateway = gateways.get(gateway_id)
        if gateway is not None and gateway.enabled:
            yield gateway
