from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
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
        probes = [await client.get(path) for path in ("/livez", "/readyz")]
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert [p.status_code for p in probes] == [200, 200]


async def test_readyz_reports_the_reason() -> None:
    async with _client(None, reason="Redis unreachable") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reasons": {"redis": "Redis unreachable"}}


GUARDED = ("/docs", "/redoc", "/openapi.json", "/metrics")


async def test_docs_openapi_and_metrics_need_the_token_when_one_is_set() -> None:
    async with _client("t") as client:
        anonymous = [await client.get(path) for path in GUARDED]
        wrong = [await client.get(path, headers={"Authorization": "Bearer x"}) for path in GUARDED]
        right = [await client.get(path, headers={"Authorization": "Bearer t"}) for path in GUARDED]
        spec = await client.get("/openapi.json", headers={"Authorization": "Bearer t"})
    assert [r.status_code for r in anonymous] == [401] * len(GUARDED)
    assert [r.status_code for r in wrong] == [401] * len(GUARDED)
    assert [r.status_code for r in right] == [200] * len(GUARDED)
    assert "/v1/things/{thing_id}" in spec.json()["paths"]
    assert "/docs" not in spec.json()["paths"]


async def test_docs_openapi_and_metrics_are_open_without_a_token() -> None:
    async with _client(None) as client:
        responses = [await client.get(path) for path in GUARDED]
    assert [r.status_code for r in responses] == [200] * len(GUARDED)
    assert "swagger-ui" in responses[0].text and "/openapi.json" in responses[0].text
    assert "redoc" in responses[1].text


async def test_metrics_may_be_public_when_a_setting_says_so() -> None:
    app = create_app("test", _routers(), [], "t", metrics_public=True)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        metrics = await client.get("/metrics")
        docs = await client.get("/openapi.json")
    assert metrics.status_code == 200
    assert docs.status_code == 401


async def test_metrics_are_prometheus_text() -> None:
    async with _client(None) as client:
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "python_info" in response.text


def _body_app(limit: int, import_limit: int) -> AsyncClient:
    router = APIRouter()

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.post("/import", max_body_size=import_limit)
    async def bulk(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app = create_app("test", [router], [], None, max_body_size=limit)
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


class Chunks:
    """A streamed body (no Content-Length) that counts how much of it was read."""

    def __init__(self, chunks: int, size: int) -> None:
        self.left, self.size = chunks, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.left:
            self.left -= 1
            yield b"x" * self.size


async def test_bodies_over_the_limit_are_refused_with_413_unread() -> None:
    async with _body_app(limit=1000, import_limit=10_000) as client:
        under = await client.post("/v1/echo", content=b"x" * 1000)
        declared = await client.post("/v1/echo", content=b"x" * 1001)
        streamed = Chunks(chunks=1000, size=100)
        chunked = await client.post("/v1/echo", content=streamed)
        larger_route = await client.post("/v1/import", content=b"x" * 10_000)
        over_larger = await client.post("/v1/import", content=b"x" * 10_001)
        after = await client.post("/v1/echo", content=b"{}")
    assert under.json() == {"size": 1000}
    assert (declared.status_code, declared.text) == (413, "Content Too Large")
    assert chunked.status_code == 413
    assert streamed.left > 900  # refused after the limit, not after reading the whole body
    assert larger_route.json() == {"size": 10_000}
    assert over_larger.status_code == 413
    assert after.json() == {"size": 2}
