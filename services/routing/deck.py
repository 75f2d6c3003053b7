"""Rate decks: the CSV form of many rules (``id,group,prefix,priority,gateways``).

``gateways`` is ``;``-separated (``1;2;#acme``); an empty ``group`` means ``0``
and an empty ``priority`` means 0. Errors name the line and the field, and up to
:data:`MAX_ERRORS` of them are reported at once so a deck is fixed in one go.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.routing_table.model import EntityId, Rule

COLUMNS = ("id", "group", "prefix", "priority", "gateways")
MAX_ERRORS = 20

_ids: TypeAdapter[str] = TypeAdapter(EntityId)


@dataclass(frozen=True, slots=True)
class DeckProblem:
    line: int
    field: str
    reason: str


class DeckError(ValueError):
    def __init__(self, problems: list[DeckProblem]) -> None:
        super().__init__("; ".join(f"line {p.line}: {p.field}: {p.reason}" for p in problems))
        self.problems = problems


def parse_deck(text: str) -> list[tuple[str, Rule]]:
    """The deck's rules in file order; raises :class:`DeckError` listing what is wrong."""
    reader = csv.reader(text.splitlines())
    try:
        return _rules(reader)
    except csv.Error as error:  # e.g. a field over the csv module's 131,072 characters
        raise DeckError([DeckProblem(reader.line_num, "row", f"not CSV: {error}")]) from None


def _rules(reader: Iterator[list[str]]) -> list[tuple[str, Rule]]:
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != COLUMNS:
        raise DeckError([DeckProblem(1, "header", f"expected {','.join(COLUMNS)}")])
    rows: list[tuple[str, Rule]] = []
    seen: dict[str, int] = {}
    problems: list[DeckProblem] = []
    for line, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            problems.append(DeckProblem(line, "row", f"{len(row)} fields, expected {len(COLUMNS)}"))
        else:
            rule_id = row[0]
            rule = _row(line, row, problems)
            if rule is not None:
                if rule_id in seen:
                    problems.append(DeckProblem(line, "id", f"duplicate of line {seen[rule_id]}"))
                seen[rule_id] = line
                rows.append((rule_id, rule))
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        raise DeckError(problems)
    return rows


def _row(line: int, row: list[str], problems: list[DeckProblem]) -> Rule | None:
    rule_id, group, prefix, priority, gateways = row
    fields: dict[str, Any] = {
        "group": group or "0",
        "prefix": prefix,
        "priority": priority or 0,
        "gateways": gateways.split(";") if gateways else (),
    }
    try:
        _ids.validate_python(rule_id)
        return Rule.model_validate(fields)
    except ValidationError as error:
        for detail in error.errors(include_url=False, include_input=False):
            field = str(detail["loc"][0]) if detail["loc"] else "id"
            problems.append(DeckProblem(line, field, detail["msg"]))
        return None
