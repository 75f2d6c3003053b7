from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient

from shared.api import create_app


def _routers() -> list[APIRouter]:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    return [router]


def _client(token: str | None, reason: str | None = None) -> AsyncClient:
    async def check() -> str | None:
        return reason

    app = create_app("test", _routers(), [("redis", check)], token)
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


async def test_v1_open_without_a_configured_token() -> None:
    async with _client(None) as client:
        response = await client.get("/v1/things/7")
    assert response.status_code == 200
    assert response.json() == {"id": "7"}


async def test_v1_requires_the_bearer_token_when_configured() -> None:
    async with _client("s3cret") as client:
        missing = await client.get("/v1/things/7")
        wrong = await client.get("/v1/things/7", headers={"Authorization": "Bearer nope"})
        right = await client.get("/v1/things/7", headers={"Authorization": "Bearer s3cret"})
        probes = [await client.get(path) for path in ("/livez", "/readyz", "/metrics")]
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert [p.status_code for p in probes] == [200, 200, 200]


async def test_readyz_reports_the_reason() -> None:
    async with _client(None, reason="Redis unreachable") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reasons": {"redis": "Redis unreachable"}}


async def test_docs_and_openapi_are_served() -> None:
    async with _client("t") as client:
        docs = await client.get("/docs")
        spec = await client.get("/openapi.json")
    assert docs.status_code == 200
    assert "/v1/things/{thing_id}" in spec.json()["paths"]


async def test_metrics_are_prometheus_text() -> None:
    async with _client(None) as client:
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "python_info" in response.text
