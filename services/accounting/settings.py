"""The accounting service's own settings (``CALLMESH_ACCOUNTING_*``).

Kept beside the service rather than in ``shared.settings`` because no other
process reads them.  Without ``DATABASE_URL`` the records go to an SQLite file
under ``CALLMESH_DATA_DIR``: for the all-in-one and one instance only.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.accounting import MAX_BATCH_COMPLETIONS


class AccountingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLMESH_ACCOUNTING_", extra="ignore", hide_input_in_errors=True
    )

    database_url: SecretStr | None = None
    """``postgresql://user:password@host:5432/db``; a secret: it may hold a password."""
    max_call_duration: float = Field(default=4 * 3600.0, gt=0)
    """Seconds without a sign of life after which an open call is closed as ``timeout``."""
    close_interval: float = Field(default=60.0, gt=0)
    """Seconds between two looks for calls to close as ``timeout``."""
    consumers: int = Field(default=1, ge=1, le=64)
    """Queue consumers of one instance, each taking batches: their events are committed together."""
    completed_batch: int = Field(default=1, ge=1, le=MAX_BATCH_COMPLETIONS)
    """Completions per ``accounting.cdr.completed.batch`` message; 1: each alone, as
    ``accounting.cdr.completed`` (what a subscriber of that event alone needs)."""
    retry_delay: float = Field(default=1.0, gt=0)
    """Seconds before retrying an event whose database write failed (doubling, up to 30)."""
