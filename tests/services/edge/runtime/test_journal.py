"""An edge worker's outbox journal on a real directory: what is not settled survives the
process and comes back in order, settled segments go, the disk stays bounded, and a torn or
foreign file never stops a start."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.edge.runtime.journal import MAX_UNSYNCED, SPARE_SLOTS, Journal
from services.edge.runtime.publisher import EventPublisher
from shared.contracts.call_event_json import written
from shared.contracts.calls import CallEvent, CallStarted
from shared.sip.transport.udp import HELD
from tests.services.edge.runtime.test_journal_lines import line
from tests.services.edge.runtime.test_publisher import Broker, unbatched
from tests.shared.bus.support import until

MB = 1 << 20


def started(n: int) -> CallEvent:
    return CallStarted(
        call_id=f"call-{n}",
        at=1_764_000_000.5 + n,
        edge="edge-a",
        from_tag="a1",
        caller="alice",
        callee_dialled="1555",
        callee="1555",
        source="127.0.0.1:5060",
        transport="udp",
    )


def claim(root: Path, index: int = 0, max_bytes: int = MB, segment_bytes: int = MB) -> Journal:
    journal = Journal.claim(root, index, max_bytes, segment_bytes)
    assert journal is not None
    return journal


def append(journal: Journal, event: CallEvent) -> int | None:
    """Journal ``event`` as the publisher does: with its fields written as JSON."""
    return journal.append(event, written(event)[1])


def segments(journal: Journal) -> list[str]:
    return sorted(path.name for path in journal.directory.glob("*.journal"))


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def replayed(journal: Journal) -> list[int]:
    """What a successor on the same slot would publish again."""
    return [seq for seq, _ in Journal(journal.directory, -1, MB).recover()]


def test_a_bursts_events_wait_for_its_end_and_go_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = claim(tmp_path)
    journal.recover()
    writes: list[bytes] = []
    write = os.write

    def noted(fd: int, data: bytes) -> int:
        writes.append(data)
        return write(fd, data)

    monkeypatch.setattr(os, "write", noted)
    with HELD:
        assert [append(journal, started(n)) for n in range(3)] == [1, 2, 3]
        assert writes == []
        assert list(HELD.write_ahead) == [journal]  # once, however many wait
    assert len(writes) == 1
    assert replayed(journal) == [1, 2, 3]
    assert append(journal, started(4)) == 4  # outside a burst: written at once
    assert len(writes) == 2


def test_a_bursts_events_the_disk_did_not_take_whole_are_not_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted as refused; the publisher, which was given their numbers, settles them as
    nothing; the torn line ends its segment."""
    journal = claim(tmp_path)
    journal.recover()
    assert append(journal, started(0)) == 1
    before = sample("callmesh_edge_outbox_unjournaled_total", {"reason": "error"})
    first_line = len(line(2, started(1)))
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, data[: first_line + 9]))
    with HELD:
        seqs = [append(journal, started(n)) or 0 for n in (1, 2, 3)]
    monkeypatch.undo()
    assert seqs == [2, 3, 4]
    assert sample("callmesh_edge_outbox_unjournaled_total", {"reason": "error"}) == before + 2
    assert journal.unsettled == 2  # 1 and 2
    journal.settle(seqs)
    assert journal.unsettled == 1
    assert append(journal, started(5)) == 5
    assert replayed(journal) == [1, 2, 5]  # 3 torn, 4 never written (2, behind 1, comes again)


def test_a_bursts_events_refused_by_the_disk_are_counted_and_the_next_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = claim(tmp_path)
    journal.recover()
    before = sample("callmesh_edge_outbox_unjournaled_total", {"reason": "error"})

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with HELD:
        seqs = [append(journal, started(n)) or 0 for n in range(2)]
    monkeypatch.undo()
    assert sample("callmesh_edge_outbox_unjournaled_total", {"reason": "error"}) == before + 2
    assert journal.unsettled == 0
    journal.settle(seqs)
    assert journal.unsettled == 0
    assert append(journal, started(3)) == 3
    assert replayed(journal) == [3]


def test_settling_or_closing_in_a_burst_writes_its_events_first(tmp_path: Path) -> None:
    """A mark line never comes before an event numbered under it; a close loses nothing."""
    journal = claim(tmp_path)
    journal.recover()
    assert append(journal, started(0)) == 1
    with HELD:
        assert append(journal, started(1)) == 2
        journal.settle([1])
        assert replayed(journal) == [2]
        assert append(journal, started(2)) == 3
        journal.close()
    assert [seq for seq, _ in Journal(journal.directory, -1, MB).recover()] == [2, 3]


def test_what_was_not_settled_comes_back_in_order_to_the_next_process(tmp_path: Path) -> None:
    journal = claim(tmp_path)
    assert journal.recover() == []
    seqs = [append(journal, started(n)) for n in range(6)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    journal.settle([2, 1, 5])  # out of order, as concurrent confirms come
    assert journal.unsettled == 3
    # The process dies here: nothing closed.  Its successor takes the same slot.
    successor = Journal(journal.directory, -1, MB)
    pending = successor.recover()
    # Above the watermark (2) all come back, the 5th too: settled, but behind open ones. A
    # duplicate the accounting service's store ignores, where a gap would be a lost record.
    assert [seq for seq, _ in pending] == [3, 4, 5, 6]
    assert [event for _, event in pending] == [started(n) for n in (2, 3, 4, 5)]
    assert append(successor, started(9)) == 7  # numbers go on past the predecessor's
    assert successor.unsettled == 5


def in_segments_of_three(root: Path, events: int, *, syncing: bool = False) -> Journal:
    """A journal whose segments hold three events each, `events` appended."""
    journal = claim(root, segment_bytes=3 * len(line(1, started(1))))
    journal.syncing = syncing
    journal.recover()
    for n in range(events):
        append(journal, started(n))
    return journal


def test_settled_segments_are_deleted_and_a_start_opens_its_own(tmp_path: Path) -> None:
    journal = in_segments_of_three(tmp_path, 10)
    assert len(segments(journal)) == 4  # 3 + 3 + 3 + 1 events
    journal.settle(range(1, 8))
    assert segments(journal) == ["00000000000000000007.journal", "00000000000000000010.journal"]
    journal.settle([8, 9, 10])
    assert segments(journal) == ["00000000000000000010.journal"]
    journal.close()
    assert segments(journal) == []  # everything settled: nothing left behind


def test_a_graceful_stop_keeps_what_was_not_settled(tmp_path: Path) -> None:
    journal = claim(tmp_path)
    journal.recover()
    append(journal, started(1))
    append(journal, started(2))
    journal.settle([1])
    journal.close()
    again = claim(tmp_path)
    assert [seq for seq, _ in again.recover()] == [2]
    again.settle([2])
    again.close()
    assert segments(again) == []


def test_a_torn_last_line_is_skipped_in_one_log_line_and_never_appended_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = claim(tmp_path)
    journal.recover()
    append(journal, started(1))
    torn = line(2, started(2))[:25]
    (journal.directory / segments(journal)[0]).open("ab").write(torn)  # killed mid-write
    (journal.directory / "notes.journal").write_bytes(b"left by a hand")
    before = sample("callmesh_edge_outbox_skipped_total")
    successor = Journal(journal.directory, -1, MB)
    with caplog.at_level(logging.WARNING, "callmesh.edge"):
        pending = successor.recover()
    assert [seq for seq, _ in pending] == [1]
    lines = [r.getMessage() for r in caplog.records if "edge outbox" in r.getMessage()]
    assert len(lines) == 1
    assert "1 call events of a previous run to publish again; 2 unreadable records" in lines[0]
    assert sample("callmesh_edge_outbox_skipped_total") == before + 2
    assert append(successor, started(3)) == 2
    reread = Journal(journal.directory, -1, MB).recover()
    assert [seq for seq, _ in reread] == [1, 2]  # the new event did not join the torn line


def test_past_its_bound_an_event_is_not_journaled_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = len(line(1, started(1)))
    journal = claim(tmp_path, max_bytes=2 * size + 5)
    journal.recover()
    before = sample("callmesh_edge_outbox_unjournaled_total", {"reason": "full"})
    with caplog.at_level(logging.WARNING, "callmesh.edge"):
        assert [append(journal, started(n)) for n in range(4)] == [1, 2, None, None]
    assert sample("callmesh_edge_outbox_unjournaled_total", {"reason": "full"}) == before + 2
    assert sum("not journaled" in r.getMessage() for r in caplog.records) == 1
    journal.settle([1, 2])  # the marks may pass the bound: they are what frees the disk
    assert journal.unsettled == 0


def test_a_slot_held_by_a_live_process_sends_the_next_one_to_a_spare(tmp_path: Path) -> None:
    first = claim(tmp_path, index=1)
    second = claim(tmp_path, index=1)
    assert first.directory.name == "worker-1"
    assert second.directory.name == f"worker-{SPARE_SLOTS[0]}"
    first.close()
    assert claim(tmp_path, index=1).directory.name == "worker-1"


def test_an_unusable_directory_leaves_the_events_in_memory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert Journal.claim(tmp_path / "file", 0, MB) is None


async def test_events_a_stopped_publisher_could_not_send_go_out_once_with_the_next(
    tmp_path: Path,
) -> None:
    away = Broker(silent=True)  # the broker never confirms
    first = EventPublisher(away, batch=8, journal=claim(tmp_path))
    assert first.recover() == 0
    for n in range(20):
        first.offer(started(n))
    await first.stop()  # after its drain time: dropped here, still journaled
    broker = Broker()
    journal = claim(tmp_path)
    second = EventPublisher(broker, batch=8, journal=journal)
    assert second.recover() == 20
    second.offer(started(99))
    await until(lambda: journal.unsettled == 0)
    published = [event for message in broker.published for event in unbatched(message)]
    assert sorted(published, key=str) == sorted([*map(started, range(20)), started(99)], key=str)
    await second.stop()
    assert segments(journal) == []


async def test_fsync_runs_on_its_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Watched at `os.fsync` (a compiled journal's methods cannot be replaced on it)."""
    journal = claim(tmp_path)
    loop = asyncio.get_running_loop()
    synced = asyncio.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        loop.call_soon_threadsafe(synced.set)

    monkeypatch.setattr(os, "fsync", fsync)
    publisher = EventPublisher(Broker(), journal=journal, fsync_interval=0.01)
    publisher.recover()  # opens the first segment
    assert journal.syncing  # so a segment sealed between two syncs waits for the next
    async with asyncio.timeout(5):
        await synced.wait()  # before the stop, which syncs as well
    await publisher.stop()


def journal_descriptors(journal: Journal) -> list[str]:
    """The segments this process holds open (what `/proc/self/fd` points at), deleted ones too."""
    names = []
    for link in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # (the listing's own descriptor is gone by now)
            target = os.readlink(link).removesuffix(" (deleted)")  # collected, still open
            if target.startswith(str(journal.directory)) and target.endswith(".journal"):
                names.append(Path(target).name)
    return sorted(names)


def test_segments_sealed_between_two_syncs_are_flushed_by_the_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an fsync interval a power loss costs no more than the interval: a segment
    sealed in between (closed unflushed before, its tail left to the kernel's writeback)
    is flushed, then closed, by the next sync; sealing it never waits on the disk."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = in_segments_of_three(tmp_path, 7, syncing=True)  # 3 + 3 + 1: two sealed
    assert synced == []
    assert len(journal_descriptors(journal)) == 3  # the sealed two wait for the sync
    journal.sync()
    assert synced == segments(journal)  # oldest first, the current one last
    assert journal_descriptors(journal) == [segments(journal)[-1]]
    append(journal, started(7))
    append(journal, started(8))  # the third is full: the close seals it
    journal.close()  # a stop flushes what it sealed, and holds nothing open
    assert synced[3:] == segments(journal)[2:]
    assert journal_descriptors(journal) == []


def test_without_syncing_a_sealed_segment_is_closed_at_once(tmp_path: Path) -> None:
    journal = in_segments_of_three(tmp_path, 7)
    assert journal_descriptors(journal) == [segments(journal)[-1]]
    journal.close()
    assert journal_descriptors(journal) == []


def test_a_sync_that_does_not_come_leaves_a_bounded_number_of_segments_open(
    tmp_path: Path,
) -> None:
    """A stalled disk or a long interval: past `MAX_UNSYNCED` sealed segments waiting for
    the next sync, the next is closed unflushed, rather than run the process out of
    descriptors (the settled ones are deleted meanwhile, still held open)."""
    journal = in_segments_of_three(tmp_path, 3 * (MAX_UNSYNCED + 5) + 1, syncing=True)
    journal.settle(range(1, 3 * (MAX_UNSYNCED + 5) + 1))  # collected, not closed
    assert len(journal_descriptors(journal)) == MAX_UNSYNCED + 1  # and the current one
    journal.sync()
    assert len(journal_descriptors(journal)) == 1
    journal.close()
