"""Integer metrics read at scrape time expose what ``prometheus_client``'s own metrics would.

Each test reads the collector the way Prometheus does: the text exposition,
parsed back by ``prometheus_client``'s parser.
"""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared.api.metrics import MetricsSource, fold
from shared.counters import IntCounter, IntCounters, IntGauge, IntGauges, IntMetrics

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> list[tuple[str, str, str, Series]]:
    """(name, type, help, samples) of every family, as Prometheus reads the text."""
    text = generate_latest(registry).decode()
    return [
        (family.name, family.type, family.documentation, _series(family.samples))
        for family in text_string_to_metric_families(text)
    ]


def every_sample(registry: CollectorRegistry) -> Series:
    """All samples of all families (the text form gives ``_created`` ones a family of their own)."""
    return {key: value for _n, _k, _h, series in scrape(registry) for key, value in series.items()}


def _series(samples: list[Sample]) -> Series:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def without_created(families: list[tuple[str, str, str, Series]]) -> list[tuple[str, str, Series]]:
    """The families with their ``_created`` values (times) replaced by 0."""
    return [
        (name, kind, {key: 0.0 if key[0].endswith("_created") else v for key, v in series.items()})
        for name, kind, _help, series in families
    ]


class Demo:
    """One metric of each kind, counted into a registry of its own."""

    def __init__(self) -> None:
        self.metrics = IntMetrics()
        self.calls = self.metrics.add(IntCounter("demo_calls", "Calls set up"))
        self.codes = self.metrics.add(IntCounters[int]("demo_responses", "By code", ("code",)))
        self.pairs = self.metrics.add(
            IntCounters[tuple[str, str]]("demo_attempts", "By set and uri", ("set", "destination"))
        )
        self.version = self.metrics.add(IntGauge("demo_version", "Table version"))
        self.live = self.metrics.add(IntGauges[str]("demo_live", "Live ones", ("kind",)))
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.metrics)


@pytest.fixture
def demo() -> Demo:
    return Demo()


def test_counts_come_out_as_counter_samples_with_their_labels(demo: Demo) -> None:
    demo.calls.value += 3
    demo.codes[200] += 1
    demo.codes[200] += 1
    demo.codes[487] += 1
    demo.pairs["ds1", "sip:a@192.0.2.1"] += 1
    families = {name: (kind, series) for name, kind, _help, series in scrape(demo.registry)}
    kind, calls = families["demo_calls"]
    assert (kind, calls[("demo_calls_total", ())]) == ("counter", 3.0)
    kind, codes = families["demo_responses"]
    assert kind == "counter"
    assert codes[("demo_responses_total", (("code", "200"),))] == 2.0
    assert codes[("demo_responses_total", (("code", "487"),))] == 1.0
    _kind, pairs = families["demo_attempts"]
    labels = (("destination", "sip:a@192.0.2.1"), ("set", "ds1"))
    assert pairs[("demo_attempts_total", labels)] == 1.0


def test_gauges_come_out_as_set_and_a_removed_series_is_gone(demo: Demo) -> None:
    demo.version.value = 7
    demo.live["invite"] = 4
    demo.live["non_invite"] = 1
    demo.live.pop("non_invite")
    families = {name: (kind, series) for name, kind, _help, series in scrape(demo.registry)}
    assert families["demo_version"] == ("gauge", {("demo_version", ()): 7.0})
    assert families["demo_live"] == ("gauge", {("demo_live", (("kind", "invite"),)): 4.0})


def test_a_gauge_with_a_reader_is_read_at_each_scrape(demo: Demo) -> None:
    versions = iter((5, 6))
    demo.version.value = 99  # what a reader replaces
    demo.version.read = lambda: next(versions)
    for expected in (5.0, 6.0):
        families = {name: series for name, _kind, _help, series in scrape(demo.registry)}
        assert families["demo_version"] == {("demo_version", ()): expected}


def test_a_series_is_created_at_its_first_count(demo: Demo) -> None:
    before = time.time()
    demo.codes[503] += 1
    after = time.time()
    demo.codes[503] += 1  # a later count keeps the first time
    created = every_sample(demo.registry)[("demo_responses_created", (("code", "503"),))]
    assert before <= created <= after


def counted_alike(demo: Demo) -> CollectorRegistry:
    """``prometheus_client``'s own metrics beside `demo`'s, named alike and counted alike."""
    theirs = CollectorRegistry(auto_describe=True)
    calls = Counter("demo_calls", "Calls set up", registry=theirs)
    codes = Counter("demo_responses", "By code", ["code"], registry=theirs)
    pairs = Counter("demo_attempts", "By set and uri", ["set", "destination"], registry=theirs)
    version = Gauge("demo_version", "Table version", registry=theirs)
    live = Gauge("demo_live", "Live ones", ["kind"], registry=theirs)
    calls.inc(2)
    demo.calls.value += 2
    codes.labels("180").inc()
    demo.codes[180] += 1
    pairs.labels("ds1", "sip:b@192.0.2.2").inc()
    demo.pairs["ds1", "sip:b@192.0.2.2"] += 1
    version.set(3)
    demo.version.value = 3
    live.labels("invite").set(2)
    demo.live["invite"] = 2
    return theirs


def test_the_exposition_is_what_prometheus_clients_own_metrics_give(demo: Demo) -> None:
    theirs, ours = counted_alike(demo), demo.registry
    assert without_created(scrape(ours)) == without_created(scrape(theirs))
    assert [(name, kind, help) for name, kind, help, _ in scrape(ours)] == [
        (name, kind, help) for name, kind, help, _ in scrape(theirs)
    ]


def test_created_samples_follow_prometheus_clients_switch(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs, ours = counted_alike(demo), demo.registry
    assert "demo_calls_created" in {name for name, _labels in every_sample(ours)}
    # what PROMETHEUS_DISABLE_CREATED_SERIES sets (its function is untyped)
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    names = {name for name, _labels in every_sample(ours)}
    assert not any(name.endswith("_created") for name in names)
    assert without_created(scrape(ours)) == without_created(scrape(theirs))


def test_a_labelled_family_without_series_is_still_announced(demo: Demo) -> None:
    text = generate_latest(demo.registry).decode()
    assert "# TYPE demo_responses_total counter" in text.splitlines()
    assert not [line for line in text.splitlines() if line.startswith("demo_responses")]


def test_workers_counts_are_summed_when_folded_into_one_scrape() -> None:
    workers = [Demo(), Demo()]
    for count, worker in zip((2, 5), workers, strict=True):
        worker.calls.value += count
        worker.codes[200] += count
    own = list(workers[0].registry.collect())
    texts = [generate_latest(workers[1].registry).decode()]
    folded = fold(own, texts, MetricsSource(scrape=_nothing, prefix="demo_"))
    series = {(s.name, tuple(s.labels.items())): s.value for f in folded for s in f.samples}
    assert series[("demo_calls_total", ())] == 7
    assert series[("demo_responses_total", (("code", "200"),))] == 7


async def _nothing() -> list[str]:
    return []
