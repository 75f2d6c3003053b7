"""An edge worker's outbox journal: its call events on disk until the broker confirmed them.

Why: the publisher's backlog is memory, so a worker killed (SIGKILL, the OOM
killer, a crash) lost the call events waiting in it or in flight, hence call
records (the fault drill lost 1 to 13 per edge killed).  Every call event the
publisher takes is appended here first, in one ``write()``: no waiting, the page
cache takes it and keeps it when the process dies.  The events of a UDP burst's
handling wait for its end, and go in one ``write()`` just before the datagrams its
handling sent, which wait too (`shared.sip.transport.udp.HeldSends.write_ahead`):
a process killed before then has sent nothing they cover.  A power loss is
covered only as far as the last fsync (`sync`, every
``CALLMESH_EDGE_OUTBOX_FSYNC_INTERVAL`` seconds when set, the segments sealed since the
one before included).  The publisher
settles each event once the broker confirmed it (or it was given up), and a
worker that starts on the directory first publishes what its predecessor
journaled and never settled.  Publishing an event twice is harmless: the
accounting service stores each event once, under a hash of its content.

Layout: one slot directory per worker (``worker-<index>`` under
``<dir>/<namespace>``), held with ``flock`` by the process using it (the kernel
lets go when the process dies, even by SIGKILL; a second edge sharing the
directory takes a spare slot).  In it, segments ``<first seq>.journal`` of
`journal_lines`, the current one appended to, a new one past
``SEGMENT_BYTES`` and at every start (never a line appended after a torn
one).  Every event up to the watermark is settled; when it moves, a mark line
says so, so that a start replays only what is above it, and the segments
wholly below it are deleted.  Disk use is bounded by ``max_bytes``: past it an
event is not journaled (still published from memory), counted and logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.edge import metrics
from services.edge.runtime.journal_lines import JournalReading, event_line, mark_line
from shared.contracts.calls import CallEvent
from shared.settings import Settings
from shared.sip.transport.udp import HELD

log = logging.getLogger("callmesh.edge")

SEGMENT_BYTES = 4 << 20
"""A segment's size from which the next event opens a new one."""
MAX_UNSYNCED = 8
"""Sealed segments kept open for the next fsync at most: past it (a stalled disk, a long
interval) the next is closed unflushed, as without syncing, rather than pile descriptors up."""
SUFFIX = ".journal"
LOCK_FILE = "lock"
SLOT_PREFIX = "worker-"
SPARE_SLOTS = range(64, 128)
"""Slots for a worker whose own is held by another process (two edges on one directory)."""
LOG_INTERVAL = 10.0
DEFAULT_DIR = "edge-outbox"
"""Under ``CALLMESH_DATA_DIR`` when ``CALLMESH_EDGE_OUTBOX_DIR`` is unset."""


def outbox_root(settings: Settings) -> Path | None:
    """The directory of this namespace's worker slots (``None``: off, or no call events)."""
    directory = settings.edge_outbox_dir
    if directory is None:
        directory = str(Path(settings.data_dir) / DEFAULT_DIR)
    if not directory or not settings.call_events:
        return None
    return Path(directory) / settings.namespace


def open_outbox(settings: Settings, index: int) -> Journal | None:
    """Worker `index`'s journal as the settings say (``None``: off, or no call events)."""
    root = outbox_root(settings)
    if root is None:
        return None
    return Journal.claim(root, index, settings.edge_outbox_max_mb << 20)


def _lock(directory: Path) -> int | None:
    """The slot's lock file, opened and locked; None when a live process holds it."""
    lock = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live process
        os.close(lock)
        return None
    return lock


@dataclass
class Segment:
    first: int
    """The sequence number the segment starts at (its name)."""
    path: Path
    size: int


class Journal:
    """One worker's journal in its slot directory, which it holds locked until `close`."""

    def __init__(
        self, directory: Path, lock: int, max_bytes: int, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self._lock = lock
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._sealed: list[Segment] = []
        """Segments no longer written to, oldest first."""
        self._current = Segment(0, directory, 0)
        self._fd = -1
        self._next_seq = 1
        self._open: deque[int] = deque()
        """Journaled events not settled yet, oldest first (they settle in any order)."""
        self._settled_early: set[int] = set()
        """Settled events behind an older one still open."""
        self._waiting: list[tuple[int, bytes]] = []
        """Events appended while a UDP burst is handled, and their lines, for `flush`."""
        self._lost: set[int] = set()
        """Events numbered, then not written (`flush` failed): their settling is a no-op."""
        self._mark = 0
        self._bytes = 0
        self._refused = 0
        self._logged_at = -LOG_INTERVAL
        self.syncing = False
        """Whether `sync` runs every so often (a publisher with an fsync interval): then a
        segment sealed in between stays open until the next `sync` flushed it too, so a power
        loss costs no more than the interval whatever rotated (closed unflushed, its tail was
        left to the kernel's writeback, some 30 s)."""
        self._unsynced: list[int] = []
        """Descriptors of the segments sealed since the last `sync`, oldest first."""

    @classmethod
    def claim(
        cls, root: Path, index: int, max_bytes: int, segment_bytes: int = SEGMENT_BYTES
    ) -> Journal | None:
        """The journal of worker `index`'s slot under `root` (a spare one if it is held).

        ``None`` (logged) when no directory can be used: the events then wait in memory only.
        """
        for slot in (index, *SPARE_SLOTS):
            directory = root / f"{SLOT_PREFIX}{slot}"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                lock = _lock(directory)
            except OSError as error:
                log.error("edge outbox %s unusable, call events in memory only: %s", root, error)
                return None
            if lock is not None:
                return cls(directory, lock, max_bytes, segment_bytes)
        log.error("edge outbox %s: every slot is held, call events in memory only", root)
        return None

    @classmethod
    def take(cls, directory: Path, max_bytes: int) -> Journal | None:
        """The journal of the existing slot `directory`, if no live process holds it."""
        try:
            lock = _lock(directory)
        except OSError as error:
            log.warning("edge outbox %s unusable: %s", directory, error)
            return None
        return None if lock is None else cls(directory, lock, max_bytes)

    @property
    def unsettled(self) -> int:
        """Events journaled and not settled yet."""
        return len(self._open) - len(self._settled_early)

    def recover(self) -> list[tuple[int, CallEvent]]:
        """The events a predecessor journaled and never settled, oldest first; then a new segment.

        They stay open until settled here; what cannot be read is skipped, in one log line.
        """
        reading, found = JournalReading(), []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                found.append(Segment(int(path.stem), path, path.stat().st_size))
            except (ValueError, OSError):
                reading.skipped += 1
                reading.first_problem = reading.first_problem or f"{path.name}: not a segment"
        found.sort(key=lambda segment: segment.first)
        for segment in found:
            try:
                reading.read(segment.path.read_bytes(), segment.path.name)
            except OSError as error:
                reading.skipped += 1
                reading.first_problem = reading.first_problem or f"{segment.path.name}: {error}"
        pending = reading.pending()
        self._sealed = found
        self._bytes = sum(segment.size for segment in found)
        self._next_seq = max([reading.last_seq, *(segment.first for segment in found)]) + 1
        self._mark = reading.watermark
        self._open.extend(seq for seq, _ in pending)
        self._start_segment()
        self._collect()
        if pending or reading.skipped:
            log.warning(
                "edge outbox %s: %d call events of a previous run to publish again;"
                " %d unreadable records skipped%s",
                self.directory,
                len(pending),
                reading.skipped,
                f" (the first: {reading.first_problem})" if reading.skipped else "",
            )
        metrics.OUTBOX_SKIPPED.value += reading.skipped
        return pending

    def append(self, event: CallEvent, written: bytes) -> int | None:
        """Journal `event`, whose fields ``written`` are as JSON: its sequence number, or
        ``None`` when it could not be (counted).

        While a UDP burst is handled the line waits, and `HELD` has this journal written
        before the burst's datagrams leave; at any other time it is written now.
        """
        seq = self._next_seq
        line = event_line(seq, event, written)
        if self._bytes + len(line) > self._max_bytes:
            self._refuse("full", f"over its {self._max_bytes} bytes")
            return None
        if self._fd < 0 or self._current.size >= self._segment_bytes:
            self._rotate()
            if self._fd < 0:
                self._refuse("error", "no segment open")
                return None
        self._next_seq = seq + 1
        self._current.size += len(line)  # counted now, less what `flush` could not write
        self._bytes += len(line)
        self._open.append(seq)
        waiting = self._waiting
        waiting.append((seq, line))
        if not HELD.holding:
            self.flush()
            if seq in self._lost:  # the caller is told: it will not settle it
                self._lost.discard(seq)
                return None
            return seq
        if len(waiting) == 1:
            HELD.write_ahead.append(self)
        return seq

    def flush(self) -> None:
        """Write the waiting lines in one ``write()``; those it could not write whole are not
        journaled (counted and logged), and their torn end closes the segment."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        data = waiting[0][1] if len(waiting) == 1 else b"".join(line for _, line in waiting)
        problem = "a short write" if self._fd >= 0 else "no segment open"
        try:
            written = os.write(self._fd, data) if self._fd >= 0 else 0
        except OSError as error:
            written, problem = 0, str(error)
        if written == len(data):
            return
        self._current.size -= len(data) - written
        self._bytes -= len(data) - written
        self._close_segment()  # a torn line ends its segment: the next event opens another
        end = 0
        for seq, line in waiting:
            end += len(line)
            if end > written:
                self._refuse("error", problem)
                with contextlib.suppress(ValueError):  # (not if settled meanwhile)
                    self._open.remove(seq)
                    self._lost.add(seq)  # so that its settling, to come, is a no-op

    def settle(self, seqs: Iterable[int]) -> None:
        """These events are confirmed (or given up): never to be published again."""
        open_, early = self._open, self._settled_early
        early.update(seqs)
        if self._lost:  # never journaled: nothing to settle
            lost = early & self._lost
            early -= lost
            self._lost -= lost
        while open_ and open_[0] in early:
            early.discard(open_.popleft())
        watermark = open_[0] - 1 if open_ else self._next_seq - 1
        if watermark > self._mark:
            self._mark = watermark
            self._write(mark_line(watermark))
            self._collect()

    def sync(self) -> None:
        """Flush to the disk what a power loss would take: the segments sealed since the last
        `sync` (then closed), and the current one.

        Run in a thread (`EventPublisher`): it leaves the waiting lines to the loop's thread,
        which writes them at the end of the burst that is being handled."""
        self._sync_sealed()
        fd = self._fd  # read once: the loop's thread may close it meanwhile (EBADF, logged)
        if fd >= 0:
            self._fsync(fd)

    def _sync_sealed(self) -> None:
        """Flush and close the segments sealed since the last `sync` (see `syncing`)."""
        unsynced = self._unsynced
        while True:
            try:  # one at a time: the loop's thread may seal another, or a stop drain them too
                fd = unsynced.pop(0)
            except IndexError:
                return
            self._fsync(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _fsync(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as error:
            log.warning("edge outbox %s: fsync failed: %s", self.directory, error)

    def close(self) -> None:
        """Let go of the directory; with nothing left to publish, its segments are deleted."""
        self._close_segment()
        self._sync_sealed()  # syncing, the last segment too: a stop leaves nothing unflushed
        if not self._open:
            opened = [self._current] if self._current.first else []  # (none before `recover`)
            for segment in (*self._sealed, *opened):
                segment.path.unlink(missing_ok=True)
        os.close(self._lock)

    def _write(self, line: bytes) -> None:
        self.flush()  # the events first, in the order they were numbered
        if self._fd < 0:
            return
        try:
            written = os.write(self._fd, line)
        except OSError:
            written = 0
        self._current.size += written
        self._bytes += written
        if written != len(line):
            self._close_segment()

    def _start_segment(self) -> None:
        path = self.directory / f"{self._next_seq:020d}{SUFFIX}"
        self._current = Segment(self._next_seq, path, 0)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as error:
            self._fd = -1
            log.warning("edge outbox %s: cannot open a segment: %s", self.directory, error)

    def _close_segment(self) -> None:
        self.flush()
        if self._fd >= 0:
            if self.syncing and len(self._unsynced) < MAX_UNSYNCED:
                self._unsynced.append(self._fd)  # closed by the next `sync`, once flushed
            else:
                with contextlib.suppress(OSError):  # (the descriptor is gone whatever it says)
                    os.close(self._fd)
            self._fd = -1

    def _rotate(self) -> None:
        """Seal the current segment (if it was opened) and open the next."""
        self._close_segment()
        if self._current.first:
            self._sealed.append(self._current)
            self._next_seq = max(self._next_seq, self._current.first + 1)
        self._start_segment()
        self._collect()

    def _collect(self) -> None:
        """Delete the sealed segments every event of which is settled."""
        sealed = self._sealed
        while sealed:
            after = sealed[1].first if len(sealed) > 1 else self._current.first
            if after - 1 > self._mark:
                return
            segment = sealed.pop(0)
            segment.path.unlink(missing_ok=True)
            self._bytes -= segment.size

    def _refuse(self, reason: str, detail: str) -> None:
        self._refused += 1
        metrics.OUTBOX_UNJOURNALED[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning(
                "edge outbox %s: call event not journaled (%s), published from memory only:"
                " %d so far",
                self.directory,
                detail,
                self._refused,
            )
