"""The edge's copy of the routing table: loaded from Redis, then kept current by events.

Why this shape: an edge must route the moment it starts (so it loads a snapshot
from Redis, the record, before any event arrives) and must never route on a table
it knows is incomplete. Events carry the table version; the cache applies version
N+1 on top of N and anything else (a jump, a broker reconnect, an import) makes it
reload in the background while lookups keep using the current index, which is
then swapped in whole. Lookups are plain synchronous calls on that index: no I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from pydantic import ValidationError

from shared.background import cancel_and_wait
from shared.bus import Bus, Envelope
from shared.contracts.routing import ROUTING_EVENTS, TableChanged, TableReplaced
from shared.routing_table.cache.lookups import IndexRoutes
from shared.routing_table.changes import InvalidChangeError
from shared.routing_table.compiled import CompiledRule
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import RECORD_TYPES, Rule
from shared.routing_table.packed import unpack_rules
from shared.routing_table.store import RoutingStore, Snapshot
from shared.store import Store

log = logging.getLogger("callmesh.routing_cache")


class RoutingCache(IndexRoutes):
    def __init__(self, store: Store, bus: Bus) -> None:
        super().__init__()
        self._store = RoutingStore(store)
        self._bus = bus
        self.version = -1
        """Table version the index reflects; -1 until the first snapshot is loaded."""
        self.resyncs = 0
        self._loading = False
        self._held: list[tuple[int, TableChanged | None]] = []
        self._resync_wanted = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Subscribe first (so nothing is missed), then load; returns once the table is in."""
        await self._bus.subscribe([ROUTING_EVENTS], self._on_event)
        self._bus.on_reconnect(self._on_reconnect)
        self._worker = asyncio.create_task(self._resync_loop())
        self.request_resync()
        await self._ready.wait()

    async def stop(self) -> None:
        await cancel_and_wait(self._worker)  # its Redis reads may swallow a cancel
        self._worker = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    # -- keeping current -----------------------------------------------------

    def request_resync(self) -> None:
        self._resync_wanted.set()

    async def _on_reconnect(self) -> None:
        log.info("routing cache: bus reconnected, reloading the table")
        self.request_resync()

    async def _on_event(self, envelope: Envelope) -> None:
        try:
            event: TableChanged | None
            if envelope.type == TableReplaced.routing_key:
                version, event = envelope.payload(TableReplaced).version, None
            else:
                event = envelope.payload(TableChanged)
                version = event.version
        except ValidationError as error:
            log.warning("routing cache: unreadable %s event (%s), reloading", envelope.type, error)
            self.request_resync()
            return
        if self._loading:
            self._held.append((version, event))
        else:
            self._advance(version, event)

    def _advance(self, version: int, event: TableChanged | None) -> None:
        """Apply the change set that follows the current version; anything else reloads."""
        if version <= self.version:
            return
        if event is None or version != self.version + 1:
            self.request_resync()
            return
        try:
            changes = [item.change() for item in event.changes]
        except InvalidChangeError as error:
            log.warning(
                "routing cache: invalid change in version %d (%s), reloading", version, error
            )
            self.request_resync()
            return
        for change in changes:
            if change.record is None:
                self.index.remove(change.kind, change.id)
            else:
                self.index.put(change.kind, change.id, change.record)
        self.version = version

    async def _resync_loop(self) -> None:
        while True:
            await self._resync_wanted.wait()
            self._resync_wanted.clear()
            try:
                await self._resync()
            except Exception as error:
                log.warning("routing cache: reload failed (%s), retrying", error)
                self._loading = False
                await asyncio.sleep(1.0)
                self.request_resync()

    async def _resync(self) -> None:
        self._loading = True
        self._held = []
        index, version = await self.load()
        self.index, self.version = index, version
        self.resyncs += 1
        self._loading = False
        held, self._held = sorted(self._held, key=lambda item: item[0]), []
        for held_version, event in held:
            self._advance(held_version, event)
        self._ready.set()
        log.info("routing cache: table version %d loaded (%d rules)", self.version, len(index))

    async def load(self) -> tuple[RoutingIndex, int]:
        """A fresh index of the whole table at one version, from the store's snapshot.

        Decoding and building run in a worker thread: a million rules take seconds
        of CPU, and the event loop (the proxy's) must keep serving meanwhile.
        """
        snapshot = await self._store.snapshot()
        return await asyncio.to_thread(self._build, snapshot), snapshot.head.version

    def _build(self, snapshot: Snapshot) -> RoutingIndex:
        index = RoutingIndex()
        for kind, records in snapshot.head.records.items():
            model = RECORD_TYPES[kind]
            for record_id, raw in records.items():
                index.put(kind, record_id, model.model_validate_json(raw))
        index.load_rules(_snapshot_rules(snapshot, index))
        return index


def _snapshot_rules(snapshot: Snapshot, index: RoutingIndex) -> Iterator[CompiledRule]:
    """The packed rules not changed since, then the changed ones that still exist.

    Each chunk is dropped from the snapshot once read, so its bytes are freed
    while the index grows instead of all of them staying to the end.
    """
    changed, chunks = snapshot.changed, snapshot.chunks
    chunks.reverse()
    while chunks:
        for rule in unpack_rules(chunks.pop(), index):
            if rule.id not in changed:
                yield rule
    for rule_id, raw in changed.items():
        if raw is not None:
            yield index.compile_rule(rule_id, Rule.model_validate_json(raw))
