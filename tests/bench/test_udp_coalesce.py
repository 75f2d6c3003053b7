"""The coalescing bench's set-ups: each edge told its rest, none shedding, and its arguments."""

from __future__ import annotations

import pytest

from bench.udp_coalesce import edge_of, main


def test_each_setup_rests_as_named_and_sheds_nothing() -> None:
    edges = {rest: edge_of(rest) for rest in (0, 5, 10)}
    assert {rest: e.env["CALLMESH_UDP_COALESCE_MS"] for rest, e in edges.items()} == {
        0: "0",
        5: "5",
        10: "10",
    }
    assert {e.env["CALLMESH_OVERLOAD_LAG_MS"] for e in edges.values()} == {"0"}
    assert len({e.namespace for e in edges.values()}) == 3
    assert len({e.port for e in edges.values()}) == 3


@pytest.mark.parametrize("argv", [["--rests", "5,101"], ["--repeat", "0"], ["--rests", "0"]])
def test_wrong_arguments_are_refused_before_anything_starts(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
