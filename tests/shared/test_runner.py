"""The process runner against the real RabbitMQ and Redis, each behind a cuttable link."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from httpx import ASGITransport, AsyncClient

from services.health.service import HealthService
from services.registrar.service import RegistrarService
from shared.runner import Process
from shared.settings import Settings
from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.netcut import NetCut

pytestmark = pytest.mark.integration


def _through(url: str, cut: NetCut) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{cut.port}")
    return parts._replace(netloc=netloc).geturl()


@pytest.fixture
async def links() -> AsyncIterator[tuple[NetCut, NetCut]]:
    amqp, redis = urlsplit(RABBITMQ_URL), urlsplit(REDIS_URL)
    amqp_cut = await NetCut(amqp.hostname or "127.0.0.1", amqp.port or 5672).start()
    redis_cut = await NetCut(redis.hostname or "127.0.0.1", redis.port or 6379).start()
    yield amqp_cut, redis_cut
    await amqp_cut.close()
    await redis_cut.close()


async def _readyz_until(
    client: AsyncClient, status: int, within: float = 30.0
) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get("/readyz")
        if response.status_code == status:
            body: dict[str, object] = response.json()
            return body
        assert asyncio.get_running_loop().time() < deadline, f"/readyz stayed {response.json()}"
        await asyncio.sleep(0.1)


async def test_readyz_turns_503_while_a_dependency_is_cut_and_back(
    links: tuple[NetCut, NetCut], namespace: str
) -> None:
    amqp_cut, redis_cut = links
    settings = Settings(
        rabbitmq_url=_through(RABBITMQ_URL, amqp_cut),
        redis_url=_through(REDIS_URL, redis_cut),
        namespace=namespace,
    )
    process = Process(settings, [RegistrarService, HealthService])
    await process.start()
    app = process.http_app()
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            assert (await _readyz_until(client, 200))["status"] == "ready"

            redis_cut.cut()
            body = await _readyz_until(client, 503)
            assert body["reasons"] == {"redis": "Redis unreachable"}
            redis_cut.restore()
            await _readyz_until(client, 200)

            amqp_cut.cut()
            body = await _readyz_until(client, 503)
            assert body["reasons"] == {
                "rabbitmq:registrar": "RabbitMQ unreachable",
                "rabbitmq:health": "RabbitMQ unreachable",
            }
            amqp_cut.restore()
            await _readyz_until(client, 200)
    finally:
        await process.stop()


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLMESH_")}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_single_service_refuses_to_start_without_broker_and_redis() -> None:
    result = _run("services.routing", {})
    assert result.returncode == 2
    assert "CALLMESH_RABBITMQ_URL and CALLMESH_REDIS_URL" in result.stderr


def test_an_open_api_on_a_public_address_is_refused() -> None:
    result = _run("services", {"CALLMESH_HTTP_LISTEN": "0.0.0.0:18080"})
    assert result.returncode == 2
    assert "CALLMESH_API_TOKEN" in result.stderr


def test_a_bad_setting_is_one_clear_line() -> None:
    result = _run("services", {"CALLMESH_SIP_LISTEN": "sctp:127.0.0.1:5060"})
    assert result.returncode == 2
    assert "sip_listen" in result.stderr
    assert "Traceback" not in result.stderr
