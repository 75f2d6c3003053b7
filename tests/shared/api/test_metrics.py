"""Folding sibling processes' metrics into one ``/metrics`` (the edge's workers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from shared.api.metrics import MetricsSource, fold, read_unix, serve_unix


class Process:
    """One process's metrics, as its own registry: the shape the edge's workers have."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("app_requests", "requests", ["method"], registry=self.registry)
        self.live = Gauge("app_live", "live things", registry=self.registry)
        self.version = Gauge("app_version", "table version", registry=self.registry)
        self.flag = Gauge("app_flag", "on or off", registry=self.registry)
        self.lag = Histogram("app_lag", "lag", buckets=(0.1, 1.0), registry=self.registry)
        self.other = Counter("other_total", "not the service's", registry=self.registry)

    def families(self) -> list[Metric]:
        return list(self.registry.collect())

    def text(self) -> str:
        return generate_latest(self.registry).decode()


async def _no_siblings() -> list[str]:
    return []


SOURCE = MetricsSource(
    _no_siblings, prefix="app_", gauges={"app_version": "min", "app_flag": "max"}
)


def samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def test_counters_histograms_and_gauges_are_summed_unless_named() -> None:
    main, worker = Process(), Process()
    main.requests.labels("INVITE").inc(3)
    worker.requests.labels("INVITE").inc(4)
    worker.requests.labels("BYE").inc(2)  # only the worker has this child
    main.live.set(5)
    worker.live.set(7)
    main.version.set(12)
    worker.version.set(11)
    main.flag.set(0)
    worker.flag.set(1)
    main.lag.observe(0.05)
    worker.lag.observe(0.5)
    worker.lag.observe(5)
    main.other.inc(1)
    worker.other.inc(100)

    folded = samples(fold(main.families(), [worker.text()], SOURCE))

    assert folded[("app_requests_total", (("method", "INVITE"),))] == 7
    assert folded[("app_requests_total", (("method", "BYE"),))] == 2
    assert folded[("app_live", ())] == 12
    assert folded[("app_version", ())] == 11  # the laggard shows
    assert folded[("app_flag", ())] == 1
    assert folded[("app_lag_count", ())] == 3
    assert folded[("app_lag_sum", ())] == 5.55
    assert folded[("app_lag_bucket", (("le", "0.1"),))] == 1
    assert folded[("app_lag_bucket", (("le", "1.0"),))] == 2
    assert folded[("app_lag_bucket", (("le", "+Inf"),))] == 3
    assert folded[("other_total", ())] == 1  # outside the prefix: this process's own


def test_created_timestamps_take_the_earliest() -> None:
    main, worker = Process(), Process()
    worker.requests.labels("INVITE").inc()
    time.sleep(0.01)
    main.requests.labels("INVITE").inc()  # created after the worker's child
    key = ("app_requests_created", (("method", "INVITE"),))
    earliest = samples(worker.families())[key]
    assert samples(main.families())[key] > earliest + 0.005

    folded = samples(fold(main.families(), [worker.text()], SOURCE))[key]
    assert folded == pytest.approx(earliest, abs=0.001)  # the text form rounds to 1e-6


def test_the_folded_families_render_as_exposition_text() -> None:
    main, worker = Process(), Process()
    main.requests.labels("INVITE").inc()
    worker.requests.labels("INVITE").inc()

    class Families:
        def collect(self) -> list[Metric]:
            return fold(main.families(), [worker.text(), worker.text()], SOURCE)

    text = generate_latest(Families()).decode()
    (requests,) = [f for f in text_string_to_metric_families(text) if f.name == "app_requests"]
    assert [(s.name, s.value) for s in requests.samples if s.name.endswith("_total")] == [
        ("app_requests_total", 3.0)
    ]


def test_a_sibling_answers_on_its_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "w1.sock")

    async def scenario() -> tuple[str | None, str | None]:
        server = await serve_unix(path)
        try:
            answered = await read_unix(path)
        finally:
            server.close()
            await server.wait_closed()
        return answered, await read_unix(str(tmp_path / "gone.sock"))

    answered, missing = asyncio.run(scenario())
    assert answered is not None and "# TYPE" in answered
    assert missing is None  # a worker that is not there is left out, not an error
