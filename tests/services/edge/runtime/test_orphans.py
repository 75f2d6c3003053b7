"""The outbox slots no worker holds any more, adopted by the edge's first process: what they
kept is published once, the slots emptied; a live worker's slot is never touched."""

from __future__ import annotations

from pathlib import Path

from services.edge.runtime.journal import Journal
from services.edge.runtime.orphans import adopt_orphans
from tests.services.edge.runtime.test_journal import MB, append, claim, segments, started
from tests.services.edge.runtime.test_publisher import Broker


def left_behind(root: Path, index: int, events: list[int]) -> Journal:
    """A slot a worker journaled `events` in and died without them confirmed."""
    journal = claim(root, index)
    journal.recover()
    for n in events:
        append(journal, started(n))
    journal.close()  # lets the slot go; unsettled events stay on disk
    return journal


async def test_the_slots_no_worker_holds_are_published_and_emptied(tmp_path: Path) -> None:
    """A worker of an edge since restarted with fewer workers (slot 3), a spare slot a second
    edge used once (64); slot 1 is held by a live worker with an event in flight."""
    gone = left_behind(tmp_path, 3, [1, 2])
    spare = left_behind(tmp_path, 64, [3])
    live = claim(tmp_path, 1)
    live.recover()
    append(live, started(4))
    broker = Broker()
    assert await adopt_orphans(tmp_path, broker, batch=1, max_bytes=MB) == 3
    assert sorted(getattr(event, "call_id", "") for event in broker.published) == [
        "call-1",
        "call-2",
        "call-3",
    ]
    assert segments(gone) == [] and segments(spare) == []
    assert live.unsettled == 1 and segments(live) != []  # untouched
    assert await adopt_orphans(tmp_path, broker, batch=1, max_bytes=MB) == 0  # once only


async def test_what_the_broker_does_not_confirm_in_time_stays_for_the_next_start(
    tmp_path: Path,
) -> None:
    orphan = left_behind(tmp_path, 2, [1, 2])
    away = Broker(silent=True)  # never confirms
    assert await adopt_orphans(tmp_path, away, batch=8, max_bytes=MB, within=0.2) == 0
    assert segments(orphan) != []
    broker = Broker()
    assert await adopt_orphans(tmp_path, broker, batch=8, max_bytes=MB) == 2
    assert segments(orphan) == []


async def test_no_outbox_directory_yet_is_nothing_to_adopt(tmp_path: Path) -> None:
    assert await adopt_orphans(tmp_path / "none", Broker(), batch=1, max_bytes=MB) == 0
