"""The edges' reads of the registrar's records: here, the bindings an edge finds at its start."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.registrar.layout import aor_key
from shared.registrar.location import bindings_mentioning
from shared.registrar.model import Binding
from shared.settings import Settings
from shared.store import Store
from shared.store.embedded import open_embedded


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    embedded = await open_embedded(Settings(data_dir=str(tmp_path), namespace="t"))
    yield embedded
    await embedded.close()


def binding(n: int, edge: str, expires_at: float) -> Binding:
    return Binding(
        aor=f"sip:u{n}@example.com",
        contact=f"sip:u{n}@192.168.1.{n % 250}:5060",
        expires_at=expires_at,
        received=f"sip:203.0.113.9:{40000 + n}",
        transport="udp",
        edge=edge,
        call_id=f"c{n}",
        cseq=1,
    )


async def write(store: Store, *bindings: Binding) -> None:
    for stored in bindings:
        key = aor_key(store, stored.aor)
        await store.redis.hset(key, stored.contact, stored.model_dump_json())


async def test_every_live_binding_naming_the_edge_is_found_a_page_at_a_time(store: Store) -> None:
    later = time.time() + 3600
    ours = [binding(n, "edge-a-1", later) for n in range(120)]
    await write(store, *ours)
    await write(store, *(binding(n, "edge-b-1", later) for n in range(120, 150)))
    await write(store, binding(150, "edge-a-1", time.time() - 1))  # expired
    await store.redis.hset(aor_key(store, "sip:x@example.com"), "sip:x@h", b'{"edge-a-1": 1}')
    pages = [page async for page in bindings_mentioning(store, "edge-a-1", page=25)]
    assert len(pages) > 1  # one SCAN step each
    found = {location for page in pages for location in page}
    assert found == {stored.location() for stored in ours}


async def test_an_empty_store_has_nothing(store: Store) -> None:
    assert [page async for page in bindings_mentioning(store, "edge-a-1")] == []
