"""One accounting database per test, on SQLite and on the real PostgreSQL alike.

The ``database_url`` fixture is parametrised, so every store test runs against
both; the PostgreSQL side creates a fresh database for the test and drops it
afterwards (and is marked ``integration``: it needs the server).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.accounting.store import RecordStore, database_url, open_engine

POSTGRES_URL = os.environ.get(
    "CALLMESH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def fresh_postgres() -> tuple[str, str]:
    """A new empty database: its URL and its name."""
    name = f"callmesh_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(database_url(POSTGRES_URL, ""), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", name


async def drop_postgres(name: str) -> None:
    admin = create_async_engine(database_url(POSTGRES_URL, ""), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def accounting_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty accounting database (``CALLMESH_ACCOUNTING_DATABASE_URL`` form)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounting.sqlite3'}"
        return
    url, name = await fresh_postgres()
    yield url
    await drop_postgres(name)


@pytest.fixture
async def record_store(accounting_url: str) -> AsyncIterator[RecordStore]:
    """A migrated store on the test's database."""
    store = RecordStore(open_engine(database_url(accounting_url, "")))
    await store.migrate()
    yield store
    await store.close()
