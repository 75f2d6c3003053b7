"""What the bus tests share besides fixtures: a test event, a collecting handler, a waiter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from shared.bus import Bus
from shared.contracts.event import Event


class Ping(Event):
    routing_key: ClassVar[str] = "test.ping"
    n: int


class Inbox:
    """A handler that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def __call__(self, item: Any) -> None:
        self.items.append(item)


async def until(predicate: Callable[[], bool], *, polls: int = 2000) -> None:
    """Wait for ``predicate``; the bound (about 20 s) only keeps a broken test from hanging."""
    for _ in range(polls):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not true after {polls} polls: {predicate}")


class MakeBus(Protocol):
    """The ``make_bus`` fixture: a started bus of the kind under test."""

    async def __call__(self, service: str = ..., instance: str = ...) -> Bus: ...
