"""Fresh PostgreSQL databases for the tests and the drill: created empty, dropped after."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.accounting.store import database_url

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
