"""Dispatcher (OpenSIPS dispatcher semantics): destination sets and how to pick from them.

The model is what the health service stores and announces
(``health.dispatcher.*`` events); :class:`Dispatcher` is the pure selection
the edge runs per call.
"""

from shared.dispatcher.hashing import rendezvous_score, unit_hash
from shared.dispatcher.model import (
    ALGORITHMS,
    Algorithm,
    Destination,
    DispatcherSet,
    destination_target_id,
)
from shared.dispatcher.selection import Call, Dispatcher

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Call",
    "Destination",
    "Dispatcher",
    "DispatcherSet",
    "destination_target_id",
    "rendezvous_score",
    "unit_hash",
]
