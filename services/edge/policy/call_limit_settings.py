"""`CALLMESH_CALL_LIMIT_*`, validated: the call limits' settings.

A module of its own so that :mod:`services.edge.policy.limits`, which every new call asks,
is compiled with the hot path: mypyc cannot compile a module that defines a pydantic model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CallLimitSettings(BaseModel):
    """`CALLMESH_CALL_LIMIT_*`: 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_subscriber: int = Field(default=0, ge=0)
    """Concurrent calls per subscriber (From user@host)."""
    per_subscriber_cps: int = Field(default=0, ge=0)
    """New calls per second per subscriber."""
    per_source: int = Field(default=0, ge=0)
    """Concurrent calls per source IP of a stranger (a source no peer covers)."""
    per_source_cps: int = Field(default=0, ge=0)
    """New calls per second per source IP of a stranger."""
    max_call_duration: float = Field(default=4 * 3600.0, gt=0)
    concurrent_status: Literal[403, 486] = 486
    """What a caller past a concurrent-call limit gets."""
