"""The counters an edge worker shares with the cluster in batches: pike's and least_calls'.

Each is off when its interval is 0 (``CALLMESH_PIKE_SHARE_INTERVAL``,
``CALLMESH_DISPATCHER_SHARE_INTERVAL``): the worker then counts alone, as before.
"""

from __future__ import annotations

import asyncio
import uuid

from services.edge.destinations import ActiveCalls, DispatchSets
from services.edge.protection import FloodDetector
from services.edge.runtime.call_counts import CallCountsRunner
from services.edge.runtime.exchanges import ExchangeLoop
from services.edge.runtime.flood_share import FloodShareRunner
from shared.dispatcher.loads import SharedCallCounts
from shared.protection.flood_counts import FloodCounts
from shared.settings import Settings
from shared.store import Store

Runner = ExchangeLoop


def start_shared_counts(
    settings: Settings,
    store: Store,
    flood: FloodDetector | None,
    calls: ActiveCalls,
    sets: DispatchSets,
) -> list[Runner]:
    """Start the exchanges this worker's settings ask for."""
    loop = asyncio.get_running_loop()
    runners: list[Runner] = []
    if flood is not None and settings.pike_share_interval > 0:
        interval = settings.pike_share_interval
        runners.append(FloodShareRunner(FloodCounts(store), flood, interval, loop))
    if settings.dispatcher_share_interval > 0:
        interval = settings.dispatcher_share_interval
        worker = f"{settings.instance}:{uuid.uuid4().hex[:12]}"
        counts = SharedCallCounts(store, worker, ttl=3 * interval)
        runners.append(CallCountsRunner(counts, calls, interval, loop, sets.balancing))
    for runner in runners:
        runner.start()
    return runners
