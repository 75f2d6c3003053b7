"""The routing service's bus contracts: its ``routing.…`` events and the ``routing.commands`` queue.

The events are how edges learn about every version of the table.

Every stored change set bumps the table version by one and is announced with it,
so a receiver that sees a version jump knows it missed one and reloads from Redis.
A single change goes out as ``routing.<kind>.upserted|deleted``, a batch as
``routing.batch.applied``; an import carries only its version and generation
(never a million rules): receivers load the new generation from Redis.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.contracts.event import Event
from shared.routing_table.changes import ChangeItem

PAST_TENSE: dict[str, str] = {"upsert": "upserted", "delete": "deleted"}
"""A single change's routing key ends in its op's past tense (the catalogue's names)."""


class TableChanged(Event):
    routing_key: ClassVar[str] = "routing.batch.applied"

    version: int
    changes: tuple[ChangeItem, ...]

    def key(self) -> str:
        """The routing key: per kind and op when it is a single change."""
        if len(self.changes) == 1:
            change = self.changes[0]
            return f"routing.{change.kind}.{PAST_TENSE[change.op]}"
        return self.routing_key


class TableReplaced(Event):
    routing_key: ClassVar[str] = "routing.table.replaced"

    version: int
    generation: str
    mode: Literal["merge", "replace"]
    rules: int


ROUTING_EVENTS = "routing.#"

COMMANDS_QUEUE = "routing.commands"
"""The work queue of route updates (`shared.routing_table.changes.parse_commands` reads them)."""
