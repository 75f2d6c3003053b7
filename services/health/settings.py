"""The health service's own settings (``CALLMESH_HEALTH_*``): probing defaults and the lease.

Kept beside the service rather than in ``shared.settings`` because no other
process reads them. Every probing default can be overridden per target
through ``PUT /v1/targets/{id}/policy``.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.health.policy import AcceptedCodes, ProbeMode
from shared.settings import split_host_port


class HealthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLMESH_HEALTH_", extra="ignore")

    probe_interval: float = Field(default=10.0, gt=0)
    """Seconds between two probes of one target (OpenSIPS ``ds_ping_interval``)."""
    probe_timeout: float = Field(default=2.0, gt=0)
    """Seconds an OPTIONS may go unanswered (its Timer F); below every interval."""
    probe_mode: ProbeMode = "always"
    failures_to_down: int = Field(default=3, ge=1, le=100)
    successes_to_up: int = Field(default=1, ge=1, le=100)
    accepted_codes: Annotated[AcceptedCodes, NoDecode] = ()
    """Final statuses that count as alive (``200``, ``2xx``); empty: any response."""
    probe_source: str = "127.0.0.1:0"
    """``host:port`` the probes are sent from (UDP; TCP connects from any port)."""
    lease_ttl: float = Field(default=3.0, ge=0.3)
    """Seconds the prober's lease lasts unless renewed: the worst-case handover time."""
    resync_interval: float = Field(default=30.0, gt=0)
    """Seconds between full reloads of the target list, covering any missed event."""

    @field_validator("probe_source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        split_host_port(value)
        return value

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Self:
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("CALLMESH_HEALTH_PROBE_TIMEOUT must be below the probe interval")
        return self
