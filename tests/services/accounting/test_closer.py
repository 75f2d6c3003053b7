"""The timeout close: silent open calls become ``timeout`` once, and are announced."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import REGISTRY

from services.accounting.closer import TimeoutCloser
from services.accounting.store import Applied, RecordStore
from tests.services.accounting.calls import T0, answered_call, started


async def test_a_silent_answered_call_is_closed_once(record_store: RecordStore) -> None:
    *talking, _bye = answered_call()
    for event in [*talking, started("setup-only", at=T0 + 10), started("fresh", at=T0 + 9000)]:
        await record_store.apply(event)
    announced: list[Applied] = []

    async def announce(changes: Sequence[Applied]) -> None:
        announced.extend(changes)

    now = T0 + 30 + 3600.5
    closer = TimeoutCloser(record_store, announce, 3600, logging.getLogger("test"), lambda: now)
    assert await closer.round() == 2
    closed = {a.records[0].record.call_id: a.records[0].record for a in announced}
    assert set(closed) == {"c1", "setup-only"}
    assert (closed["c1"].disposition, closed["c1"].end_at) == ("timeout", T0 + 30)
    assert closed["setup-only"].end_at == T0 + 10
    assert REGISTRY.get_sample_value("callmesh_accounting_open_calls") == 1
    assert await closer.round() == 0
