"""docs/operations.md's configuration tables match the settings classes, row for field.

Every ``BaseSettings`` class under shared/ and services/ must be listed here
(found by reading the sources), every field of each must have its row with its
default, and every row must name a field: a setting added, renamed or given a
new default without its documentation fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.accounting.settings import AccountingSettings
from services.edge.api.accounting import CallControlSettings
from services.health.settings import HealthSettings
from shared.hep.settings import CaptureSettings
from shared.settings import Settings
from shared.store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
DOCUMENTED: tuple[type[BaseSettings], ...] = (
    Settings,
    HealthSettings,
    AccountingSettings,
    CaptureSettings,
    StoreSettings,
    CallControlSettings,
)


def settings_classes(root: Path) -> set[str]:
    """Names of the classes deriving from ``BaseSettings`` in the sources (nothing imported)."""
    found = set()
    for path in [*root.glob("shared/**/*.py"), *root.glob("services/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "BaseSettings" for base in node.bases
            ):
                found.add(node.name)
    return found


def table_rows(page: str) -> dict[str, str]:
    """Variable → default cell of every configuration-table row of the page."""
    section = page.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if not line.startswith("| `CALLMESH_"):
            continue
        names = re.findall(r"`(CALLMESH_[A-Z0-9_]+)`", cells[0])
        assert len(names) == 1, f"one variable per row, spelled in full: {line}"
        assert names[0] not in rows, f"{names[0]} has two rows"
        rows[names[0]] = cells[-1]
    return rows


def variable(model: type[BaseSettings], field: str) -> str:
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def default_is_shown(info: FieldInfo, cell: str) -> bool:
    """Whether the default cell says the field's default (a computed one: anything)."""
    if info.default_factory is not None:
        return True
    default = info.default
    if default is None or default in ("", ()):
        return cell.startswith(("unset", "empty"))
    shown = re.match(r"`([^`]*)`", cell)
    if shown is None:
        return False
    if isinstance(default, bool):
        return shown.group(1) == str(default).lower()
    if isinstance(default, (int, float)):
        return float(shown.group(1)) == default
    return shown.group(1) == str(default)


def test_every_settings_class_is_checked() -> None:
    assert settings_classes(ROOT) == {model.__name__ for model in DOCUMENTED}


def test_every_field_has_its_row_and_every_row_a_field() -> None:
    rows = table_rows(OPERATIONS.read_text())
    fields = {variable(model, name) for model in DOCUMENTED for name in model.model_fields}
    assert sorted(fields - set(rows)) == [], "settings without a row in docs/operations.md"
    assert sorted(set(rows) - fields) == [], "rows in docs/operations.md naming no setting"


def test_every_row_shows_the_default() -> None:
    rows = table_rows(OPERATIONS.read_text())
    wrong = [
        f"{variable(model, name)}: {rows[variable(model, name)]!r} for {info.default!r}"
        for model in DOCUMENTED
        for name, info in model.model_fields.items()
        if not default_is_shown(info, rows[variable(model, name)])
    ]
    assert wrong == []


def test_the_checks_see_a_missing_row_and_a_wrong_default() -> None:
    page = "\n## Configuration\n\n| `CALLMESH_A` | a | `5` |\n| `CALLMESH_B` | b | unset |\n"
    assert table_rows(page) == {"CALLMESH_A": "`5`", "CALLMESH_B": "unset"}
    info = Settings.model_fields["sip_t1"]
    assert default_is_shown(info, "`0.5`")
    assert not default_is_shown(info, "`1`")
    assert not default_is_shown(Settings.model_fields["metrics_public"], "`true`")
    assert default_is_shown(Settings.model_fields["redis_url"], "unset")
    assert not default_is_shown(Settings.model_fields["redis_url"], "`redis://`")
