"""Keeps a `Directory` current: `registrar.…` events in, Redis reads for what it misses.

One feed per edge worker (each process has its own proxy and directory).  It
subscribes without a group, so every worker hears every event; a `seq` gap in
a registrar's stream, or a bus reconnect, drops everything cached (the next
calls read Redis again) rather than risk a binding that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import ValidationError

from services.edge.location.directory import (
    Answer,
    BindingsQuery,
    Directory,
    DomainQuery,
    Ha1Query,
    NonceCountQuery,
    Query,
    SubscriberQuery,
)
from shared.bus import Bus, Envelope
from shared.contracts.registrar import (
    REGISTRAR_EVENTS,
    BindingAdded,
    BindingEvent,
    BindingExpired,
    BindingRefreshed,
    BindingRemoved,
    DomainAdded,
    DomainRemoved,
)
from shared.registrar.location import (
    is_local_domain,
    lookup_bindings,
    subscriber_exists,
    subscriber_ha1,
)
from shared.registrar.nonce_counts import NonceCounts
from shared.store import Store

log = logging.getLogger("callmesh.edge")

_BINDING_EVENTS: dict[str, tuple[type[BindingEvent], bool]] = {
    BindingAdded.routing_key: (BindingAdded, True),
    BindingRefreshed.routing_key: (BindingRefreshed, True),
    BindingRemoved.routing_key: (BindingRemoved, False),
    BindingExpired.routing_key: (BindingExpired, False),
}


class LocationFeed:
    def __init__(
        self, directory: Directory, store: Store, bus: Bus, nonce_counts: NonceCounts
    ) -> None:
        self.directory = directory
        self.store = store
        self.bus = bus
        self.nonce_counts = nonce_counts
        self._loop = asyncio.get_running_loop()
        self._seen: dict[str, int] = {}
        self._reading: dict[Query, asyncio.Task[None]] = {}
        """The read of each query under way: the calls missing the same answer share it."""

    async def start(self) -> None:
        await self.bus.subscribe([REGISTRAR_EVENTS], self._on_event)
        self.bus.on_reconnect(self._on_reconnect)

    async def resolve(self, query: Query) -> None:
        """Read the answer to `query` from Redis into the directory (raises Redis errors).

        An event for the same query that arrives during the read wins over it
        (see `Directory.learn`).  Calls that miss the same answer while it is being read
        wait for that one read (and share its error): a cold cache under a burst of calls
        to one domain made a read per call, which took every connection of the pool and
        failed the calls behind them.  A nonce count is claimed once per request, never
        shared: two requests may not both use it.
        """
        if isinstance(query, NonceCountQuery):
            await self._read_and_learn(query)
            return
        reading = self._reading.get(query)
        if reading is None:
            reading = self._loop.create_task(self._read_and_learn(query))
            self._reading[query] = reading
            reading.add_done_callback(lambda _: self._reading.pop(query, None))
        await asyncio.shield(reading)

    async def _read_and_learn(self, query: Query) -> None:
        started = self.directory.reading()
        answer = await self._read(query)
        self.directory.learn(query, answer, self._loop.time(), read_at=started)

    async def _read(self, query: Query) -> Answer:
        store = self.store
        if isinstance(query, DomainQuery):
            return await is_local_domain(store, query.domain)
        if isinstance(query, BindingsQuery):
            found = await lookup_bindings(store, query.aor, time.time())
            return tuple(binding.location() for binding in found)
        if isinstance(query, SubscriberQuery):
            return await subscriber_exists(store, query.user, query.domain)
        if isinstance(query, NonceCountQuery):
            return await self.nonce_counts.claim(query.nonce, query.count)
        assert isinstance(query, Ha1Query)
        return await subscriber_ha1(store, query.user, query.domain, query.algorithm)

    async def _on_reconnect(self) -> None:
        self.directory.forget_all()
        self._seen.clear()

    async def _on_event(self, envelope: Envelope) -> None:
        last = self._seen.get(envelope.stream)
        if last is not None and envelope.seq != last + 1:
            log.info(
                "registrar events from %s skipped %d; location cache cleared",
                envelope.stream,
                envelope.seq - last - 1,
            )
            self.directory.forget_all()
        self._seen[envelope.stream] = envelope.seq
        now = self._loop.time()
        try:
            binding_kind = _BINDING_EVENTS.get(envelope.type)
            if binding_kind is not None:
                kind, present = binding_kind
                binding = envelope.payload(kind).binding
                self.directory.apply_binding(binding, present=present, now=now)
            elif envelope.type == DomainAdded.routing_key:
                domain = envelope.payload(DomainAdded).domain
                self.directory.apply_domain(domain, local=True, now=now)
            elif envelope.type == DomainRemoved.routing_key:
                domain = envelope.payload(DomainRemoved).domain
                self.directory.apply_domain(domain, local=False, now=now)
        except ValidationError as error:
            log.info("ignored malformed %s: %d errors", envelope.type, error.error_count())
