"""Many rows in one statement: insert unless present, or insert else update, per dialect.

Why not SQLAlchemy's multi-row ``VALUES`` on PostgreSQL: it binds every value
of every row as its own parameter, so a thousand events cost the service
tens of thousands of parameters to process and PostgreSQL a new statement to
parse and plan for every different row count.  On PostgreSQL the rows go
instead as one array per column, unnested by the server: one prepared
statement whatever the count, and asyncpg encodes each array in one call.
SQLite keeps the multi-row ``VALUES`` (it has no arrays; its rows never
cross a network).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, ColumnElement, Executable, Table, any_, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import ARRAY, Text


def upsert(
    dialect: str,
    table: Table,
    rows: Sequence[dict[str, Any]],
    key: tuple[str, ...],
    *,
    update: bool,
    returning: str | None = None,
) -> tuple[Executable, Any]:
    """The statement and parameters writing ``rows`` (all with the same columns) into ``table``.

    A row whose ``key`` is already stored is skipped, or with ``update`` overwrites
    the stored row's other columns; ``returning`` names a column to return for
    each row written.
    """
    columns = tuple(rows[0])
    if dialect == "postgresql":
        statement = _unnest_upsert(table, columns, key, update, returning)
        return statement, {name: [row[name] for row in rows] for name in columns}
    insert = sqlite.insert(table)
    if update:
        written = insert.on_conflict_do_update(
            index_elements=list(key),
            set_={name: insert.excluded[name] for name in columns if name not in key},
        )
    else:
        written = insert.on_conflict_do_nothing(index_elements=list(key))
    # The rows given apart from the statement: its SQL is compiled once and cached.
    if returning is not None:
        return written.returning(table.c[returning]), list(rows)
    return written, list(rows)


@functools.cache
def _unnest_upsert(
    table: Table,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    update: bool,
    returning: str | None,
) -> Executable:
    arrays = ", ".join(f"CAST(:{name} AS {table.c[name].type.compile()}[])" for name in columns)
    if update:
        assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name not in key)
        conflict = f"DO UPDATE SET {assignments}"
    else:
        conflict = "DO NOTHING"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(key)}) {conflict}"
    )
    if returning is not None:
        sql += f" RETURNING {returning}"
    return text(sql)


def among(dialect: str, column: Column[Any], values: Sequence[str]) -> ColumnElement[bool]:
    """``column`` is one of ``values``: on PostgreSQL one array parameter (one prepared
    statement whatever their number), elsewhere ``IN`` with a parameter each."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(Text)))
    return column.in_(values)
