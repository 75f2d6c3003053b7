"""A binding an edge reports unreachable is removed and announced with cause ``unreachable``.

On the embedded store (the registrar's own Lua scripts) and the in-memory bus,
through the work queue as an edge sends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.registrar.bindings import BindingStore
from services.registrar.outbox import EventOutbox
from services.registrar.unreachable import UnreachableHandler
from shared.bus import DeadLetter, Envelope, WorkMessage
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.registrar import UNREACHABLE_QUEUE, BindingRemoved, UnreachableBinding
from shared.registrar.model import Binding
from shared.settings import Settings
from shared.store.embedded import open_embedded

AOR = "sip:alice@example.com"
LOG = logging.getLogger("test")


def binding(contact: str, received: str = "sip:203.0.113.9:40000", edge: str = "edge-a") -> Binding:
    return Binding(
        aor=AOR,
        contact=contact,
        expires_at=time.time() + 3600,
        received=received,
        transport="udp",
        edge=edge,
        call_id="c1",
        cseq=1,
    )


def report(
    contact: str, received: str = "sip:203.0.113.9:40000", expires_at: float | None = None
) -> bytes:
    return UnreachableBinding(
        aor=AOR, contact=contact, received=received, edge="edge-a", expires_at=expires_at
    ).to_bytes()


@dataclass
class Registrar:
    bindings: BindingStore
    bus: MemoryBus
    removed: asyncio.Queue[BindingRemoved]

    async def store(self, *found: Binding) -> None:
        await self.bindings.change(AOR, time.time(), lambda live: None, lambda _: list(found))

    async def contacts(self) -> list[str]:
        snapshot = await self.bindings.snapshot(AOR)
        return sorted(snapshot.live(time.time()))


@pytest.fixture
async def registrar(tmp_path: Path) -> AsyncIterator[Registrar]:
    store = await open_embedded(Settings(data_dir=str(tmp_path), namespace="unreachable"))
    broker = MemoryBroker()
    bus, edge = MemoryBus(broker, "t", "registrar", "r1"), MemoryBus(broker, "t", "edge", "e1")
    await bus.start()
    await edge.start()
    outbox = EventOutbox(bus, LOG)
    outbox.start()
    bindings = BindingStore(store)
    removed: asyncio.Queue[BindingRemoved] = asyncio.Queue()

    async def heard(envelope: Envelope) -> None:
        removed.put_nowait(envelope.payload(BindingRemoved))

    await edge.subscribe(["registrar.binding.removed"], heard)
    await bus.consume(UNREACHABLE_QUEUE, UnreachableHandler(bindings, outbox, LOG))
    yield Registrar(bindings, edge, removed)
    await outbox.stop()
    await edge.close()
    await bus.close()
    await store.close()


async def test_reported_binding_is_removed_with_cause_unreachable(registrar: Registrar) -> None:
    await registrar.store(binding("sip:alice@192.168.1.5"), binding("sip:alice@192.168.1.6"))
    await registrar.bus.send(UNREACHABLE_QUEUE, report("sip:alice@192.168.1.5"))
    event = await asyncio.wait_for(registrar.removed.get(), 5)
    assert (event.cause, event.binding.contact) == ("unreachable", "sip:alice@192.168.1.5")
    assert await registrar.contacts() == ["sip:alice@192.168.1.6"]


async def test_binding_refreshed_from_elsewhere_is_kept(registrar: Registrar) -> None:
    """The phone registered again from a new address: that binding is not the silent one."""
    await registrar.store(binding("sip:alice@192.168.1.5", received="sip:203.0.113.9:50000"))
    await registrar.bus.send(UNREACHABLE_QUEUE, report("sip:alice@192.168.1.5"))
    await registrar.bus.send(UNREACHABLE_QUEUE, report("sip:alice@192.168.1.7"))  # none such
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(registrar.removed.get(), 0.5)
    assert await registrar.contacts() == ["sip:alice@192.168.1.5"]


async def test_binding_refreshed_since_the_report_is_kept(registrar: Registrar) -> None:
    """The phone registered again through the same flow while the report was queued: the
    binding the edge found silent (its expiry as the edge knew it) is no longer the live one."""
    silent = binding("sip:alice@192.168.1.5")
    refreshed = silent.model_copy(update={"expires_at": silent.expires_at + 60, "cseq": 2})
    await registrar.store(refreshed)
    await registrar.bus.send(
        UNREACHABLE_QUEUE, report(silent.contact, expires_at=silent.expires_at)
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(registrar.removed.get(), 0.5)
    assert await registrar.contacts() == ["sip:alice@192.168.1.5"]
    await registrar.bus.send(
        UNREACHABLE_QUEUE, report(silent.contact, expires_at=refreshed.expires_at)
    )
    event = await asyncio.wait_for(registrar.removed.get(), 5)
    assert event.binding.contact == silent.contact


async def test_a_malformed_report_is_dead_lettered(tmp_path: Path) -> None:
    store = await open_embedded(Settings(data_dir=str(tmp_path), namespace="unreachable"))
    handler = UnreachableHandler(
        BindingStore(store), EventOutbox(MemoryBus(MemoryBroker(), "t", "r", "r"), LOG), LOG
    )
    with pytest.raises(DeadLetter, match="not an UnreachableBinding"):
        await handler(WorkMessage(b'{"aor": ""}'))
    await store.close()
