"""A service process's collector: what it holds at start frozen, collections at its thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.collector import collect_rarely


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_what_the_process_holds_is_frozen_and_collections_come_at_the_thresholds() -> None:
    kept = [object()]  # loaded at start, kept for the process's lifetime
    gc.unfreeze()
    collect_rarely((12_345, 11, 12))
    assert gc.get_threshold() == (12_345, 11, 12)
    assert not any(kept is tracked for tracked in gc.get_objects())  # out of the collector's sight
