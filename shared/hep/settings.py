"""What the edge captures: HEP destinations and filters, and its trace ring (``CALLMESH_…``).

Apart from `shared.settings.Settings` so capture's settings stay together; read
by each edge process at start (`services.edge.runtime.capture.capture_of`).
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.hep.destination import HepDestination, parse_destinations


class CaptureSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLMESH_", extra="ignore", hide_input_in_errors=True
    )

    hep_destinations: str = ""
    """Collectors every SIP message is mirrored to as HEPv3, ``udp:host:port[,tcp:…]``
    (empty: no HEP)."""
    hep_capture_id: int = Field(default=0, ge=0, le=0xFFFFFFFF)
    hep_password: SecretStr | None = None
    """HEP's authentication key chunk, when the collector asks for one."""
    hep_skip_methods: str = ""
    """Methods not mirrored (requests and their responses), e.g. ``OPTIONS``."""
    hep_sample: float = Field(default=1.0, ge=0, le=1)
    """Share of calls mirrored, chosen by their Call-ID: a call is mirrored whole or not."""
    hep_log_events: bool = False
    """Also send the edge's call events (started, answered, ended…) as HEP log packets."""
    hep_queue: int = Field(default=10000, ge=1)
    """HEP packets waiting to be sent at most; past it they are dropped and counted."""
    trace_ring: int = Field(default=10000, ge=0)
    """Messages each edge worker keeps for ``GET /v1/calls/{call_id}/trace`` (0: none)."""
    trace_peer_timeout: float = Field(default=2.0, gt=0, le=30)
    """Seconds a trace look-up waits for the other edges' parts of the call."""
    http_advertise: str = ""
    """``host:port`` (or a URL) where the other edges reach this edge's API, for traces
    across edges; empty: ``CALLMESH_HTTP_LISTEN`` (the host name for a wildcard address)."""
    trace_ring_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Bytes of messages the ring keeps at most (the oldest leave first)."""

    @field_validator("hep_destinations")
    @classmethod
    def _hep_destinations(cls, value: str) -> str:
        parse_destinations(value)
        return value

    @cached_property
    def destinations(self) -> list[HepDestination]:
        return parse_destinations(self.hep_destinations)

    @cached_property
    def methods_skipped(self) -> frozenset[str]:
        return frozenset(m.strip().upper() for m in self.hep_skip_methods.split(",") if m.strip())
