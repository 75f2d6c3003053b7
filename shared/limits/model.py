"""What a call asks of the shared limits and what it gets: plain values, no I/O.

The edge's sans-IO core builds a :class:`LimitQuery` per new call and reads the
:class:`LimitVerdict`; the runtime asks Redis (:mod:`shared.limits.store`) in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Demand:
    """One limit a call is held to: ``entity`` at most ``max_concurrent`` calls at once
    and/or ``max_cps`` new calls per second (None: that limit does not apply), from a
    bucket of ``burst`` tokens (None: ``max_cps``)."""

    entity: str
    max_concurrent: int | None = None
    max_cps: int | None = None
    burst: int | None = None
    take: int = 1
    """CPS tokens to take at once: the call's own, the rest kept by the edge worker as its
    local allowance. The call needs one token in the bucket; the rest may leave it in debt
    (below zero), which its refill repays before the next call is admitted."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A capped gateway a call may go to (``gateway``: ``gateway:<id>``): it takes a channel
    of each of ``caps`` there (the gateway's own cap, its carriers'), or skips it."""

    gateway: str
    caps: tuple[Demand, ...]


@dataclass(frozen=True, slots=True)
class LimitQuery:
    """A new call's limits: every one of ``demands`` or none (all or nothing), and of the
    capped ``gateways`` (in the order the call would try them) the first with a free
    channel; those before it are skipped like busy gateways."""

    call_id: str
    demands: tuple[Demand, ...] = ()
    gateways: tuple[Channel, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    """``refused`` is None when the call was admitted, else the entity that refused it, with
    ``kind`` ``"concurrent"`` or ``"cps"`` and, for CPS, ``retry_after_ms`` until a token.
    ``gateway``: the capped gateway whose channel the call took, ``channels`` the entities
    it took one of there (the gateway's, its carriers'); ``skipped``: those at their cap."""

    refused: str | None = None
    kind: str = ""
    retry_after_ms: int = 0
    gateway: str | None = None
    skipped: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    spare: tuple[tuple[str, int], ...] = ()
    """(entity, tokens) taken beyond the call's own: the worker's local allowance."""

    @property
    def admitted(self) -> bool:
        return self.refused is None


ADMITTED: Final = LimitVerdict()
