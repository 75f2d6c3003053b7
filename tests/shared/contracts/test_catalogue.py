"""The event catalogue of docs/bus.md against `shared/contracts/`: every event, where it lives.

Each event class with a routing key must appear in a catalogue row whose
"defined in" cell names its module and class and whose first cell names its
routing key; each class a row names must exist there.  So adding, moving or
renaming an event without the catalogue fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import shared.contracts
from shared.contracts.event import Event

CATALOGUE = Path(__file__).resolve().parents[3] / "docs" / "bus.md"


def catalogue_rows(text: str) -> list[tuple[str, str, list[str]]]:
    """(routing-key cell, module file, classes) of each row of the event catalogue."""
    section = text.split("## Event catalogue", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `") or len(cells) < 5:
            continue
        module, _, classes = cells[2].partition(" ")
        rows.append((cells[0], module, re.findall(r"`(\w+)`", classes)))
    return rows


def contract_events() -> dict[tuple[str, str], type[Event]]:
    """(module file, class name) → every event class of `shared/contracts/` with a routing key."""
    found = {}
    for info in pkgutil.iter_modules(shared.contracts.__path__):
        module = importlib.import_module(f"shared.contracts.{info.name}")
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Event)
                and value.__module__ == module.__name__
                and "routing_key" in vars(value)
            ):
                found[(f"{info.name}.py", name)] = value
    return found


def names_key(cell: str, routing_key: str) -> bool:
    """The cell names the key in full, or by its last part (`.refreshed` after `….added`)."""
    return routing_key in cell or f"`.{routing_key.split('.', 2)[2]}`" in cell


def missing_from(text: str) -> list[str]:
    rows = catalogue_rows(text)
    events = contract_events()
    problems = []
    for (module, name), event in sorted(events.items()):
        if not any(
            module == row_module and name in classes and names_key(key_cell, event.routing_key)
            for key_cell, row_module, classes in rows
        ):
            problems.append(f"{module} {name} ({event.routing_key}) is not in the catalogue")
    for _, module, classes in rows:
        problems += [f"{module} {n}: no such event" for n in classes if (module, n) not in events]
    return problems


def test_every_contract_event_is_in_the_catalogue_under_its_module() -> None:
    assert len(contract_events()) >= 20  # the walk sees the contracts
    assert missing_from(CATALOGUE.read_text()) == []


def test_a_drifted_catalogue_is_caught() -> None:
    text = CATALOGUE.read_text()
    assert missing_from(text.replace("health.py `TargetRemoved`", "edge.py `TargetRemoved`")) == [
        "health.py TargetRemoved (health.target.removed) is not in the catalogue",
        "edge.py TargetRemoved: no such event",
    ]
    without = "\n".join(line for line in text.splitlines() if "`edge.source.blocked`" not in line)
    assert missing_from(without) == [
        "protection.py SourceBlocked (edge.source.blocked) is not in the catalogue"
    ]
