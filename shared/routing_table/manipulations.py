"""The manipulation rule sets of the table, found by where they are attached.

An edge asks per outgoing branch for the sets of the caller's source group,
the matched rule and the chosen gateway, so the sets are kept grouped by
attachment: one dict probe each, no scan.  Within one attachment the sets
apply in the order of their ids (the API has no other order to offer).
"""

from __future__ import annotations

from shared.routing_table.manipulation import RuleSet

Attached = tuple[str, str]
"""(scope kind, id): ``("gateway", "1")``, ``("source_group", "0")``."""


class ManipulationIndex:
    __slots__ = ("_attached", "_by_id")

    def __init__(self) -> None:
        self._by_id: dict[str, RuleSet] = {}
        self._attached: dict[Attached, tuple[RuleSet, ...]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def put(self, rule_set: RuleSet) -> None:
        self.remove(rule_set.id)
        self._by_id[rule_set.id] = rule_set
        self._regroup((rule_set.scope.kind, rule_set.scope.id))

    def remove(self, set_id: str) -> None:
        old = self._by_id.pop(set_id, None)
        if old is not None:
            self._regroup((old.scope.kind, old.scope.id))

    def attached(self, kind: str, target_id: str | None) -> tuple[RuleSet, ...]:
        if target_id is None:
            return ()
        return self._attached.get((kind, target_id), ())

    def for_branch(self, group: str, rule_id: str | None, gateway_id: str | None) -> list[RuleSet]:
        """The sets one branch gets, in the order they apply (source group, rule, gateway)."""
        return [
            *self.attached("source_group", group),
            *self.attached("rule", rule_id),
            *self.attached("gateway", gateway_id),
        ]

    def _regroup(self, where: Attached) -> None:
        sets = tuple(
            sorted(
                (s for s in self._by_id.values() if (s.scope.kind, s.scope.id) == where),
                key=lambda rule_set: rule_set.id,
            )
        )
        if sets:
            self._attached[where] = sets
        else:
            self._attached.pop(where, None)
