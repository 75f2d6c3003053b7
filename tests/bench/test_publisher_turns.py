"""The publisher benchmark gets every event of a small run confirmed by the real RabbitMQ."""

from __future__ import annotations

import pytest

from tests.bench.runs import printed_by


@pytest.mark.integration
def test_a_small_run_has_every_event_confirmed_on_a_busy_loop() -> None:
    """A run exits with an error unless every event was confirmed: each line says how many."""
    printed = printed_by(
        "bench.publisher_turns", "--calls", "200", "--turn-ms", "0,5", "--repeat", "1",
        timeout=120,
    )  # fmt: skip # the arguments by pairs
    lines = printed.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "busy turns of 0 ms",
        "busy turns of 5 ms",
    ]
    for line in lines:
        count, rate = line.split(": ")[1].split(" call events confirmed, ")
        assert count == "1,400"  # 200 calls, 7 events each
        assert float(rate.split()[0].replace(",", "")) > 0
