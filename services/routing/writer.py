"""Every way the table changes goes through here: check references, store, announce.

The HTTP API and the command queue share it, so a change means the same thing
whichever door it came in by. The event is published after the store accepted the
change; if publishing fails the change stays stored and edges catch up through
the version gap (or their reconnect) on the next event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.bus import Bus
from shared.contracts.event import Event
from shared.contracts.routing import TableChanged, TableReplaced
from shared.routing_table.changes import Change, InvalidChangeError, items_of
from shared.routing_table.model import Carrier, Kind, Manipulation, Record, Rule
from shared.routing_table.store import Imported, ImportMode, RoutingStore


class TableWriter:
    def __init__(self, store: RoutingStore, bus: Bus, log: logging.Logger) -> None:
        self.store = store
        self._bus = bus
        self._log = log

    async def apply(self, changes: Sequence[Change], *, command_id: str | None = None) -> int:
        """Store ``changes`` atomically, in order; returns the new table version.

        Raises :class:`InvalidChangeError` when a rule or carrier names a gateway
        or carrier that neither exists nor is created earlier in ``changes``. A
        command already stored under ``command_id`` is not stored or announced
        again: its version then is returned.
        """
        await self._check_references(changes)
        version, fresh = await self.store.apply(changes, command_id=command_id)
        if not fresh:
            self._log.info("routing: command %s applied before (version %d)", command_id, version)
            return version
        event = TableChanged(version=version, changes=tuple(items_of(changes)))
        await self._announce(event, event.key())
        return version

    async def import_rules(self, rows: Sequence[tuple[str, Rule]], mode: ImportMode) -> Imported:
        """Make a whole rate deck live at once (see :meth:`RoutingStore.import_rules`)."""
        await self._check_references(
            [Change("upsert", "rule", rule_id, rule) for rule_id, rule in rows]
        )
        imported = await self.store.import_rules(rows, mode)
        event = TableReplaced(
            version=imported.version,
            generation=imported.generation,
            mode=mode,
            rules=imported.rules,
        )
        await self._announce(event, event.routing_key)
        return imported

    async def _announce(self, event: Event, routing_key: str) -> None:
        try:
            await self._bus.publish(event, routing_key)
        except Exception as error:
            self._log.warning("routing: stored but not announced %s: %s", routing_key, error)

    async def _check_references(self, changes: Sequence[Change]) -> None:
        wanted: dict[Kind, dict[str, str]] = {"gateway": {}, "carrier": {}, "rule": {}}
        created: dict[Kind, set[str]] = {"gateway": set(), "carrier": set(), "rule": set()}
        for change in changes:
            if change.kind in created:
                if change.record is None:
                    created[change.kind].discard(change.id)
                else:
                    created[change.kind].add(change.id)
            for kind, target in _references(change.record):
                if target not in created[kind]:
                    wanted[kind].setdefault(target, f"{change.kind} {change.id}")
        for kind, targets in wanted.items():
            missing = set(targets) - await self.store.existing(kind, targets)
            if missing:
                target = min(missing)
                raise InvalidChangeError(f"{targets[target]}: unknown {kind} {target!r}")


def _references(record: Record | None) -> list[tuple[Kind, str]]:
    if isinstance(record, Rule):
        # Dispatcher sets (``@set``) belong to the health service and may come later:
        # a missing one routes to the rule's other targets, like a disabled carrier.
        return [
            ("carrier", target[1:]) if target.startswith("#") else ("gateway", target)
            for target in record.gateways
            if not target.startswith("@")
        ]
    if isinstance(record, Carrier):
        return [("gateway", member.id) for member in record.gateways]
    if isinstance(record, Manipulation) and record.scope.kind in ("gateway", "rule"):
        # Source groups and dispatcher sets are not records of the table: any id goes.
        return [(record.scope.kind, record.scope.id)]
    return []
