"""Dispatcher (OpenSIPS dispatcher semantics): destination sets and how to pick from them.

The model is what the health service stores and announces
(``health.dispatcher.*`` events); :class:`Dispatcher` is the pure selection
the edge runs per call.
"""

from shared.dispatcher.model import (
    Algorithm,
    DispatcherSet,
    SetMember,
    destination_target_id,
)
from shared.dispatcher.selection import Call, Dispatcher

__all__ = [
    "Algorithm",
    "Call",
    "Dispatcher",
    "DispatcherSet",
    "SetMember",
    "destination_target_id",
]
