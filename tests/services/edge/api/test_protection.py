"""The protection API's surface: hostile bodies get 422, a wrong token 401 (real Redis, bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.store import Store
from tests.services.edge.api.support import protection_api

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def api(redis_store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with protection_api(redis_store) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/v1/protection/allowlist/office", {"network": "not-a-network"}),
        ("put", "/v1/protection/allowlist/office", {"network": "10.0.0.0/8", "extra": 1}),
        ("put", "/v1/protection/allowlist/bad%20id", {"network": "10.0.0.0/8"}),
        ("put", "/v1/protection/allowlist/office", ["10.0.0.0/8"]),
        ("delete", "/v1/protection/blocks/everything/1.2.3.4", None),
        ("get", "/v1/protection/blocks?kind=all", None),
    ],
)
async def test_hostile_bodies_get_422(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await api.request(method.upper(), path, json=body)
    assert response.status_code == 422, response.text


async def test_the_api_wants_the_token(api: httpx.AsyncClient) -> None:
    for path in ("/v1/protection/blocks", "/v1/protection/allowlist"):
        response = await api.get(path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
