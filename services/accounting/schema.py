"""The accounting tables, and the ordered migrations that build them, on PostgreSQL or SQLite.

Why migrations as steps rather than ``create_all``: a deployed database must
move from the version it has to the one the code needs, in order and once.
``schema_version`` holds the version reached; each step runs in the
transaction that records it, under a lock (PostgreSQL: an advisory lock, so
two instances starting together do not both migrate; SQLite has one writer).
A new step is appended to :data:`MIGRATIONS`, never edited in place.

``call_events`` holds each edge event once (``event_key`` is unique: a hash
of its type and data, so a redelivery or a republish is one row);
``cdrs`` holds the record folded from them, its columns the ones the API
filters, sorts and sums on, the whole record as JSON in ``record``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

metadata = MetaData()
PEER_INDEX = "cdrs_peer"

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

call_events = Table(
    "call_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_key", String(64), nullable=False, unique=True),
    Column("call_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Index("call_events_call_id", "call_id"),
)

cdrs = Table(
    "cdrs",
    metadata,
    Column("call_id", Text, nullable=False),
    Column("from_tag", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("disposition", Text),
    Column("setup_ms", BigInteger, nullable=False),
    Column("answer_ms", BigInteger),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("billable_seconds", BigInteger, nullable=False),
    Column("caller", Text),
    Column("callee", Text),
    Column("gateway", Text),
    Column("rule", Text),
    Column("subscriber", Text),
    Column("peer", Text),
    Column("record", Text, nullable=False),
    PrimaryKeyConstraint("call_id", "from_tag"),
    Index("cdrs_setup", "setup_ms", "call_id", "from_tag"),
    Index("cdrs_open", "state", "last_seen_ms"),
    Index(PEER_INDEX, "peer", "state"),
)

MIGRATION_LOCK = 0x63_616C_6C6D_6573
"""The advisory lock key of a migration on PostgreSQL ("callmes" in ASCII)."""


def _create_v1(connection: Connection) -> None:
    """The tables as the code defines them now: a new database needs no later step's change
    (each later step checks what is there, so it runs on a new database as a no-op)."""
    for table in (call_events, cdrs):
        table.create(connection)


def _peer_v2(connection: Connection) -> None:
    """``cdrs.peer`` (the peer a call came from: ``?peer=`` of ``/v1/cdrs`` and of the live
    calls, the fraud hang-up of a peer's calls) and its index, on a database of version 1.
    Its records' ``peer`` stays empty: their events are not refolded."""
    if "peer" not in {column["name"] for column in inspect(connection).get_columns("cdrs")}:
        connection.execute(text("ALTER TABLE cdrs ADD COLUMN peer TEXT"))
    next(i for i in cdrs.indexes if i.name == PEER_INDEX).create(connection, checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _peer_v2]
"""Step ``n`` (1-based) takes the schema from version ``n - 1`` to ``n``."""

LATEST = len(MIGRATIONS)


def migrate(connection: Connection) -> int:
    """Bring the schema to :data:`LATEST` inside the caller's transaction; the version before."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    schema_version.create(connection, checkfirst=True)
    found = connection.execute(select(schema_version.c.version)).scalar()
    if found is None:
        connection.execute(schema_version.insert().values(version=0))
        found = 0
    if found > LATEST:
        raise RuntimeError(
            f"the accounting database is at schema version {found}, newer than this code's "
            f"{LATEST}: upgrade the service"
        )
    for step in MIGRATIONS[found:]:
        step(connection)
    connection.execute(schema_version.update().values(version=LATEST))
    return found
