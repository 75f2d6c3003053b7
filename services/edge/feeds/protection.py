"""One edge worker's share of the cluster's protection state: it counts, records and follows.

Counts: each failed authentication goes to the store's counters
(`shared.protection.ProtectionStore.record_failure`, one script); when that
starts a block, the worker publishes ``edge.auth.blocked`` and applies it at
once.  Records: the worker's flood blocks and scanner flags are written to
the store as they start (rare: never per message), so the API lists them.
Follows: every worker subscribes to ``edge.auth.blocked`` and
``edge.protection.…`` and applies them to its `BlockList` and `Guard`; at
start and after a bus reconnect it reloads the blocks and the allow-list
from the store (a `shared.bus.feed.EventFeed`).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from pydantic import ValidationError
from redis.exceptions import RedisError

from services.edge import metrics
from services.edge.policy.guard import Guard
from shared.acl import AclEntry, AddressAcl
from shared.bus import Bus, Envelope
from shared.bus.feed import EventFeed
from shared.contracts.event import Event
from shared.contracts.protection import (
    AllowListChanged,
    AuthBlocked,
    ProtectionCleared,
    ScannerFlagged,
    SourceBlocked,
)
from shared.protection import (
    AuthFailureSettings,
    BlockList,
    ProtectionStore,
    log_auth_failure,
)
from shared.protection.store import AUTH_KINDS
from shared.sip.transport.destination import Destination
from shared.store import Store

log = logging.getLogger("callmesh.edge.protection")

PROTECTION_EVENTS = (AuthBlocked.routing_key, "edge.protection.#")


class ProtectionFeed(EventFeed):
    def __init__(
        self,
        store: Store,
        bus: Bus,
        guard: Guard,
        blocks: BlockList,
        *,
        settings: AuthFailureSettings,
        edge: str,
    ) -> None:
        super().__init__(bus, PROTECTION_EVENTS, log)
        self.store = ProtectionStore(store)
        self._publisher = bus
        self.guard = guard
        self.blocks = blocks
        self.settings = settings
        self.edge = edge

    # ----- counting and recording ----------------------------------------------------

    async def auth_failed(self, source: Destination, user: str, realm: str, method: str) -> float:
        """Log and count one failed authentication; the seconds its answer is to be held."""
        log_auth_failure(source.host, user, realm, method, "wrong-credentials")
        metrics.AUTH_FAILURES["wrong-credentials"] += 1
        account = f"{user}@{realm}"
        counted_source = None if self.guard.allowed(source) else source.host
        now = time.time()
        settings = self.settings
        try:
            counts = await self.store.record_failure(
                account, counted_source, settings, now=now, edge=self.edge
            )
        except (RedisError, OSError) as error:
            log.warning("could not count a failed authentication: %s", error)
            return 0.0
        started: list[tuple[Literal["account", "source"], str, int, int]] = []
        if counts.account_blocked:
            started.append(("account", account, counts.account, settings.block_after))
        if counts.source_blocked:
            started.append(("source", source.host, counts.source, settings.source_block_after))
        for kind, key, failures, threshold in started:
            event = AuthBlocked(
                kind=kind,
                key=key,
                until=now + settings.block_time,
                failures=failures,
                threshold=threshold,
                window=settings.window,
                source=source.host,
                user=user,
                realm=realm,
                edge=self.edge,
            )
            await self._blocked(event)
        return counts.delay(settings)

    async def _blocked(self, event: AuthBlocked) -> None:
        self.blocks.add(event.kind, event.key, event.until)
        metrics.AUTH_BLOCKED[event.kind] += 1
        log.warning(
            "blocked %s %s for %d s after %d failed authentications",
            event.kind,
            event.key,
            self.settings.block_time,
            event.failures,
        )
        await self._publish(event)

    async def record(self, event: SourceBlocked | ScannerFlagged) -> None:
        """Write a flood block or a scanner flag to the store, where the API lists it."""
        now = time.time()
        if isinstance(event, SourceBlocked):
            kind, until, reason = "flood", now + event.block_time, f"{event.rate:.0f} requests"
        else:
            kind, until, reason = "scanner", now + event.flag_time, event.reason
        try:
            await self.store.add_block(
                "flood" if kind == "flood" else "scanner",
                event.source,
                until,
                reason=reason,
                edge=self.edge,
                now=now,
            )
        except (RedisError, OSError) as error:
            log.warning("could not record the %s block of %s: %s", kind, event.source, error)

    async def _publish(self, event: Event) -> None:
        try:
            await self._publisher.publish(event)
        except Exception as error:  # the broker's trouble must not reach the call path
            log.info("could not publish %s: %s", event.routing_key, error)

    # ----- following -----------------------------------------------------------------

    async def load(self) -> None:
        records = await self.store.blocks(time.time(), AUTH_KINDS)
        allowed = await self.store.allowlist()
        self.blocks.replace({(record.kind, record.key): record.until for record in records})
        self._apply_allowlist([entry.network for entry in allowed.values()])

    async def apply(self, envelope: Envelope) -> None:
        kind = envelope.type
        try:
            if kind == AuthBlocked.routing_key:
                blocked = envelope.payload(AuthBlocked)
                self.blocks.add(blocked.kind, blocked.key, blocked.until)
            elif kind == ProtectionCleared.routing_key:
                cleared = envelope.payload(ProtectionCleared)
                if cleared.kind in AUTH_KINDS:
                    self.blocks.remove(cleared.kind, cleared.key)
                else:
                    self.guard.clear(cleared.kind, cleared.key)
            elif kind == AllowListChanged.routing_key:
                self.reload_soon()
        except ValidationError as error:
            log.warning(
                "protection feed: ignored a malformed %s event: %s",
                kind,
                error.errors(include_url=False, include_input=False)[0]["msg"],
            )

    def _apply_allowlist(self, networks: list[str]) -> None:
        acl = AddressAcl([AclEntry.parse(network) for network in networks]) if networks else None
        self.guard.set_allowlist(acl)
