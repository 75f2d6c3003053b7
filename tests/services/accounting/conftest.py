"""One accounting database per test, on SQLite and on the real PostgreSQL alike.

The ``database_url`` fixture is parametrised, so every store test runs against
both; the PostgreSQL side creates a fresh database for the test and drops it
afterwards (and is marked ``integration``: it needs the server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy.labs.postgres import drop_postgres, fresh_postgres
from services.accounting.store import RecordStore, database_url, open_engine


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
