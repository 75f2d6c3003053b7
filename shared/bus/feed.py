"""Following a piece of stored state through its events: load, then apply what changes.

A feed subscribes first (a private queue: every subscriber gets every
event), then loads the whole state from the store, and again after every
bus reconnect (events may have been missed).  Events that arrive during a
load are held and applied after it, so a load never undoes a newer event;
a failed load is retried.  Subclasses say what to load and how to apply one
event; the edge's health and protection feeds are two.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from shared.background import cancel_and_wait
from shared.bus.base import Bus, Envelope

RETRY_DELAY: Final = 1.0


class EventFeed(abc.ABC):
    def __init__(self, bus: Bus, patterns: Sequence[str], log: logging.Logger) -> None:
        self._bus = bus
        self._patterns = tuple(patterns)
        self._log = log
        self._held: list[Envelope] | None = None
        self._reload_wanted = asyncio.Event()
        self._loaded = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def load(self) -> None:
        """Replace the state with the stored one."""

    @abc.abstractmethod
    async def apply(self, envelope: Envelope) -> None:
        """Apply one event (a malformed one is the subclass's to log and skip)."""

    async def start(self) -> None:
        """Subscribe first (so nothing is missed), then load; returns once loaded."""
        await self._bus.subscribe(self._patterns, self._on_event)
        self._bus.on_reconnect(self._on_reconnect)
        self._worker = asyncio.get_running_loop().create_task(self._reload_loop())
        self.reload_soon()
        await self._loaded.wait()

    async def stop(self) -> None:
        await cancel_and_wait(self._worker)  # its Redis reads may swallow a cancel
        self._worker = None

    def reload_soon(self) -> None:
        self._reload_wanted.set()

    async def _on_reconnect(self) -> None:
        self._log.info("%s: bus reconnected, reloading", type(self).__name__)
        self.reload_soon()

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self._reload()
            except Exception as error:
                self._log.warning("%s: reload failed (%s), retrying", type(self).__name__, error)
                self._held = None
                await asyncio.sleep(RETRY_DELAY)
                self.reload_soon()

    async def _reload(self) -> None:
        self._held = []
        await self.load()
        held, self._held = self._held, None
        for envelope in held:
            await self.apply(envelope)
        self._loaded.set()

    async def _on_event(self, envelope: Envelope) -> None:
        if self._held is not None:
            self._held.append(envelope)
        else:
            await self.apply(envelope)
