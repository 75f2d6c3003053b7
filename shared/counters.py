"""Counters and gauges kept as plain integers, turned into Prometheus families at scrape time.

Why not ``prometheus_client``'s own ``Counter``: each ``inc()`` takes a lock,
checks its amount and, for a labelled series, looks the child up; a proxy
counting a few series per message pays that on every call. A service runs one
event loop per process, so nothing else writes these integers while it counts:
an increment is a plain ``+= 1`` on a slot or a dict item, and the cost moves
to the scrape, where `IntMetrics` (a ``prometheus_client`` collector) reads them
into the same families, names, labels, help texts and types, ``_created``
samples included, that ``prometheus_client``'s metrics would have exposed.

    REQUESTS = METRICS.add(IntCounters[str]("x_requests", "Requests", ("method",)))
    REQUESTS["INVITE"] += 1
    REGISTRY.register(METRICS)

A labelled metric is a dict keyed by its label value (a tuple of them when
there are several); a label value may be any object whose ``str()`` is the
label (a status code stays an ``int`` until scraped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

K = TypeVar("K")


class IntCounter:
    """A counter without labels: ``COUNTER.value += 1``."""

    __slots__ = ("created", "help", "name", "value")

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.value = 0
        self.created = time.time()


class IntGauge:
    """A gauge without labels: ``value`` as set, or what ``read`` returns at scrape time."""

    __slots__ = ("help", "name", "read", "value")

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.value = 0
        self.read: Callable[[], int] | None = None


class IntCounters(dict[K, int]):
    """A labelled counter: ``COUNTERS[label] += 1``; a series exists from its first count."""

    __slots__ = ("created", "help", "labels", "name")

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.name = name
        self.help = help
        self.labels = labels
        self.created: dict[K, float] = {}
        """When each series was first counted: its ``_created`` sample."""

    def __missing__(self, key: K) -> int:
        """A new series (called once per label value, then dict lookups only)."""
        self.created[key] = time.time()
        return 0


class IntGauges(dict[K, int]):
    """A labelled gauge: ``GAUGES[label] = value``; ``pop`` removes a series."""

    __slots__ = ("help", "labels", "name")

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.name = name
        self.help = help
        self.labels = labels


IntMetric = IntCounter | IntGauge | IntCounters[Any] | IntGauges[Any]
M = TypeVar("M", bound=IntMetric)


class IntMetrics:
    """A service's integer metrics, as one ``prometheus_client`` collector (register it once)."""

    def __init__(self) -> None:
        self._metrics: list[IntMetric] = []

    def add(self, metric: M) -> M:
        """``metric``, exposed from now on (families come out in the order they were added)."""
        self._metrics.append(metric)
        return metric

    def collect(self) -> Iterator[Metric]:
        """Every metric's family, read now; a labelled one without series yields no samples."""
        created = prometheus_metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES, as theirs
        for metric in self._metrics:
            if isinstance(metric, IntCounter):
                yield CounterMetricFamily(
                    metric.name,
                    metric.help,
                    metric.value,
                    created=metric.created if created else None,
                )
            elif isinstance(metric, IntGauge):
                value = metric.value if metric.read is None else metric.read()
                yield GaugeMetricFamily(metric.name, metric.help, value)
            elif isinstance(metric, IntCounters):
                counter = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
                for key, count in list(metric.items()):  # a copy: no scrape sees a dict mid-change
                    since = metric.created.get(key) if created else None
                    counter.add_metric(_label_values(key), count, created=since)
                yield counter
            else:
                gauge = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
                for key, level in list(metric.items()):
                    gauge.add_metric(_label_values(key), level)
                yield gauge


def _label_values(key: object) -> list[str]:
    return [str(value) for value in key] if isinstance(key, tuple) else [str(key)]
