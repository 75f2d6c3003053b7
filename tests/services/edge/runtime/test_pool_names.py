"""A worker's instance name, and the edge it is of."""

from __future__ import annotations

import pytest

from services.edge.runtime.pool import edge_of


@pytest.mark.parametrize(
    ("instance", "edge"),
    [("edge-a-w2", "edge-a"), ("edge-a", "edge-a"), ("edge-w", "edge-w"), ("-w1", "-w1"),
     ("a-wx", "a-wx"), ("dc1-w-w12", "dc1-w")],
)  # fmt: skip # one case a pair
def test_a_workers_name_is_read_as_its_edges(instance: str, edge: str) -> None:
    assert edge_of(instance) == edge
