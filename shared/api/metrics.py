"""One ``/metrics`` for a service that runs as several processes (the edge's workers).

Why merge at scrape time: Prometheus scrapes one address per service, and the
edge's workers share its SIP ports but not its HTTP port, so the process that
serves HTTP asks its siblings for their exposition text and folds it into its
own. Nothing is shared per message: a counter increment stays a plain
in-process add, which matters on the proxy's hot path (the multiprocess mode of
``prometheus_client`` writes every increment to a memory-mapped file).

Folding rules, per sample of a family named with ``source.prefix``: counters,
histograms and gauges are summed (requests, live transactions), except the
gauges named in ``source.gauges`` (a version every worker should agree on: the
smallest shows a laggard; a flag: the largest), and ``_created`` timestamps take
the earliest. Other families (``process_*``, ``python_*``) describe the process
that answers and stay its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
GaugeRule = Literal["min", "max"]


@dataclass(frozen=True)
class MetricsSource:
    """Where the sibling processes' metrics come from and how to fold them in."""

    scrape: Callable[[], Awaitable[list[str]]]
    """Each sibling's exposition text; a sibling that does not answer is left out."""
    prefix: str
    gauges: Mapping[str, GaugeRule] = field(default_factory=dict)


def metrics_router(sources: Sequence[MetricsSource]) -> APIRouter:
    """``GET /metrics``: Prometheus text; the app factory decides whether it needs the token."""
    router = APIRouter(tags=["probes"])

    @router.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition of this process (and its edge workers)."""
        return Response(await render(sources), media_type=CONTENT_TYPE_LATEST)

    return router


async def render(sources: Iterable[MetricsSource]) -> bytes:
    """This process's metrics with every source's siblings folded in."""
    own = list(REGISTRY.collect())
    for source in sources:
        own = fold(own, await source.scrape(), source)
    return generate_latest(_Families(own))


def fold(own: list[Metric], texts: list[str], source: MetricsSource) -> list[Metric]:
    """``own`` families with the samples of ``texts`` folded in (see the module's rules).

    Samples are matched by sample name: the text form splits a family's
    ``_created`` samples off into a family of their own.
    """
    totals: dict[str, dict[SampleKey, float]] = {}
    owners: dict[str, tuple[dict[SampleKey, float], GaugeRule | None]] = {}
    for family in own:
        if not family.name.startswith(source.prefix):
            continue
        merged = totals[family.name] = {_key(sample): sample.value for sample in family.samples}
        rule = source.gauges.get(family.name) if family.type == "gauge" else None
        for suffix in _SUFFIXES.get(family.type, ("",)):
            owners[family.name + suffix] = merged, rule
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                owner = owners.get(sample.name)
                if owner is None:
                    continue
                merged, rule = owner
                key = _key(sample)
                known = merged.get(key)
                if known is None:
                    merged[key] = sample.value
                elif sample.name.endswith("_created") or rule == "min":
                    merged[key] = min(known, sample.value)
                elif rule == "max":
                    merged[key] = max(known, sample.value)
                else:
                    merged[key] = known + sample.value
    return [_with_samples(family, totals.get(family.name)) for family in own]


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
"""The sample names of each family type, after the family's name (a gauge: the name)."""


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))


def _with_samples(family: Metric, merged: dict[SampleKey, float] | None) -> Metric:
    if merged is None:
        return family
    folded = Metric(family.name, family.documentation, family.type, family.unit)
    folded.samples = [
        Sample(name, dict(labels), value, None, None) for (name, labels), value in merged.items()
    ]
    return folded


class _Families:
    """What ``generate_latest`` reads: anything with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def read_unix(path: str) -> str | None:
    """All a sibling's metrics socket sends before closing, or ``None`` if nobody listens."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return None
    try:
        return (await reader.read()).decode()
    except OSError:
        return None
    finally:
        writer.close()


async def serve_unix(path: str) -> asyncio.Server:
    """In a sibling: answer every connection on ``path`` with this process's metrics."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(generate_latest(REGISTRY))
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_unix_server(answer, path)
