"""The keepalive benchmark runs on a few bindings and prints every figure, the spread even."""

from __future__ import annotations

from tests.bench.runs import printed_by


def test_a_small_run_prints_every_figure() -> None:
    printed = printed_by("bench.keepalive", "--bindings", "3000", timeout=60)
    rows = dict(line.rsplit(None, 1) for line in printed.splitlines()[2:])
    assert float(rows["ping µs/binding/interval"]) > 0
    assert float(rows["watch µs/binding"]) > 0
    assert 1 <= float(rows["busiest second / even share"]) <= 1.5
