"""A change to the table: what the API, the command queue and the events all speak.

The command queue's JSON (``{"op", "kind", "id", "data"}``) is validated in two
steps, envelope then record, so that an error names the command's position and
the record's field (``command 2: data.prefix: String should match pattern …``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, ValidationError

from shared.model import InputModel
from shared.routing_table.model import RECORD_TYPES, EntityId, Kind, Record

Op = Literal["upsert", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    op: Op
    kind: Kind
    id: str
    record: Record | None = None


class InvalidChangeError(ValueError):
    """A change that cannot be applied; the message is meant for the operator."""


class ChangeItem(InputModel):
    """One change as it travels in commands and events; ``data`` is the record's body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Op
    kind: Kind
    id: EntityId
    data: dict[str, Any] | None = None

    @classmethod
    def of(cls, change: Change) -> ChangeItem:
        data = None if change.record is None else change.record.model_dump(mode="json")
        return cls(op=change.op, kind=change.kind, id=change.id, data=data)

    def change(self) -> Change:
        """The validated change; raises :class:`InvalidChangeError` naming the bad field."""
        if self.op == "delete":
            return Change("delete", self.kind, self.id)
        if self.data is None:
            raise InvalidChangeError("data: required for upsert")
        try:
            record = RECORD_TYPES[self.kind].model_validate(self.data)
        except ValidationError as error:
            raise InvalidChangeError(describe(error, "data")) from None
        return Change("upsert", self.kind, self.id, record)


def parse_commands(body: bytes) -> list[Change]:
    """A queue message (one command object or an array of them) as changes, in order."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidChangeError(f"malformed JSON: {error}") from None
    items = document if isinstance(document, list) else [document]
    if not items:
        raise InvalidChangeError("empty batch")
    changes = []
    for position, item in enumerate(items, 1):
        where = f"command {position}: " if isinstance(document, list) else ""
        try:
            changes.append(ChangeItem.model_validate(item).change())
        except ValidationError as error:
            raise InvalidChangeError(where + describe(error)) from None
        except InvalidChangeError as error:
            raise InvalidChangeError(f"{where}{error}") from None
    return changes


MAX_REASONS = 10
"""Errors named in one reason: it travels in a dead letter's header, so it stays short."""


def describe(error: ValidationError, root: str = "") -> str:
    """pydantic's errors as ``field.path: reason`` pairs, one line, inputs never quoted."""
    details = error.errors(include_url=False, include_input=False)
    parts = []
    for detail in details[:MAX_REASONS]:
        path = ".".join(str(part)[:64] for part in (root, *detail["loc"][:8]) if part != "")
        parts.append(f"{path or 'body'}: {detail['msg'][:200]}")
    if len(details) > MAX_REASONS:
        parts.append(f"and {len(details) - MAX_REASONS} more")
    return "; ".join(parts)


def items_of(changes: Sequence[Change]) -> list[ChangeItem]:
    return [ChangeItem.of(change) for change in changes]
