"""How long Redis work may wait, and for how many replicas (``CALLMESH_REDIS_WAIT…``).

Apart from `shared.settings.Settings` so the store's settings stay together; read
by `shared.store.open_store` in every process that uses Redis.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.store.urls import SentinelUrl, parse_redis_url


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLMESH_", extra="ignore", hide_input_in_errors=True
    )

    redis_wait: float = Field(default=3.0, gt=0, le=60)
    """Seconds a Redis command waits for an unreachable or failing-over Redis (retrying,
    asking the Sentinels again) before it fails: REGISTER 503, HTTP 503. Keep it under the
    edge's 5 s wait for the registrar's answer, or the phone gets the edge's 500 instead."""
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    """Replicas that must hold a registration, subscriber or route change before it is
    acknowledged (Redis ``WAIT``); unset: 1 with the Sentinel form, else 0."""
    redis_wait_replicas_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    """Milliseconds such a write waits for its replicas; fewer in time: the write fails (503)."""

    def replicas_to_wait(self, url: str | None) -> int:
        """``redis_wait_replicas``, or its default for ``url``'s form: 1 with Sentinels (a
        failover promotes a replica: it must hold what was acknowledged), else 0."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if url is not None and isinstance(parse_redis_url(url), SentinelUrl) else 0
