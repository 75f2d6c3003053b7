"""What a Callmesh service is to the process that runs it.

A service gets a :class:`Runtime` (settings, its bus, the store), contributes
FastAPI routers, and has a start/stop life cycle. The same service object runs
alone (``python -m services.routing``) or beside the others in the all-in-one
(``python -m services``); it cannot tell the difference.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter

from shared.bus import Bus
from shared.settings import Settings
from shared.store import Store

if TYPE_CHECKING:
    from shared.api.metrics import MetricsSource

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns ``None`` when ready, else the reason it is not (shown by ``/readyz``)."""


@dataclass
class Runtime:
    settings: Settings
    bus: Bus
    store: Store
    log: logging.Logger
    readiness: list[tuple[str, ReadinessCheck]] = field(default_factory=list)
    metrics_sources: list[MetricsSource] = field(default_factory=list)
    """Sibling processes whose metrics this process's ``/metrics`` folds in."""
    colocated: tuple[str, ...] = ()
    """The names of the services this process runs (the all-in-one's every one): what a
    service may reach at this process's own HTTP address."""


class Service(abc.ABC):
    name: ClassVar[str]

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.bus = runtime.bus
        self.store = runtime.store
        self.log = runtime.log

    def routers(self) -> Sequence[APIRouter]:
        """Routers mounted under the process's HTTP app (``/v1/...`` paths)."""
        return ()

    @abc.abstractmethod
    async def start(self) -> None:
        """Declare queues, subscribe, open sockets; return once serving."""

    async def stop(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release what ``start`` took; the bus and store are closed by the runner."""
