"""Leg B's Call-IDs for a worker of several: ones its Call-ID affinity hands back to it.

`runtime.affinity` hands every message to the worker its Call-ID hashes to; a B2BUA pair
lives on the worker the caller's Call-ID hashes to, so leg B's Call-ID is drawn until it
hashes there too and the gateway's messages reach the pair (docs/b2bua.md, "Workers").
"""

from __future__ import annotations

from collections.abc import Callable

from services.edge.runtime.affinity import WorkerGroup
from shared.sip.branch import new_call_id


def owned_call_ids(group: WorkerGroup | None) -> Callable[[], str]:
    """Leg B's Call-IDs: ones `runtime.affinity` hands to this worker (about `count` tries)."""
    if group is None or group.count < 2:
        return new_call_id
    owner, index = group.owner, group.index

    def owned() -> str:
        while True:
            call_id = new_call_id()
            if owner(call_id.encode()) == index:
                return call_id

    return owned
