"""`CALLMESH_PIKE_*`, validated: the flood detector's settings.

A module of its own so that :mod:`services.edge.protection.flood`, which runs per packet, is
compiled with the hot path: mypyc cannot compile a module that defines a pydantic model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FloodSettings(BaseModel):
    """`CALLMESH_PIKE_*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(default=30, ge=1)
    """Requests one source may send per period (pike's reqs_density_per_unit)."""
    period: float = Field(default=2.0, gt=0)
    """Sampling period in seconds (pike's sampling_time_unit)."""
    block_time: float = Field(default=120.0, gt=0)
    """Seconds a blocked source stays dropped after it stopped flooding."""
    max_sources: int = Field(default=100_000, ge=16)
    max_blocked: int = Field(default=10_000, ge=16)
