"""The accounting service's Prometheus metrics (default registry, served by ``/metrics``).

``records_written`` is a counter (its rate is records written per second);
``lag`` is how long after the edge saw it an event's record change was
committed (the queue's lag, as felt by billing); ``open_calls`` is refreshed
by the timeout closer's rounds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "callmesh_accounting_events",
    "Call events taken from the queue, by outcome (stored, duplicate, dead)",
    ["outcome"],
)
RECORDS_WRITTEN = Counter("callmesh_accounting_records_written", "Record versions committed")
COMPLETED = Counter(
    "callmesh_accounting_records_completed", "accounting.cdr.completed events published"
)
TIMED_OUT = Counter("callmesh_accounting_calls_timed_out", "Open calls closed as timeout")
STORE_ERRORS = Counter(
    "callmesh_accounting_store_errors", "Database writes that failed and were retried"
)
LAG = Histogram(
    "callmesh_accounting_lag_seconds",
    "From an event's time at the edge to its commit in the accounting database",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
OPEN_CALLS = Gauge("callmesh_accounting_open_calls", "Call attempts not complete yet")
