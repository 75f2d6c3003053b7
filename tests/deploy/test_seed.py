"""The seed table, written through a routing service's API, routes each number as it says."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import fakeredis
import httpx
import pytest

from deploy.seed import GATEWAYS, ROUTES, gateway_ports, main, seed
from services.routing.service import RoutingService
from shared.api.app import create_app
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store


@pytest.fixture
async def routing_api() -> AsyncIterator[httpx.AsyncClient]:
    """A routing service on the in-memory bus and store, behind its HTTP API."""
    settings = Settings(namespace="seed", data_dir="/nonexistent")
    bus = MemoryBus(MemoryBroker(), "seed", "routing", "r1")
    await bus.start()
    store = Store(fakeredis.FakeAsyncRedis(), "seed")
    service = RoutingService(Runtime(settings, bus, store, logging.getLogger("test.seed")))
    await service.start()
    app = create_app("routing", service.routers(), [], None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await service.stop()
    await bus.close()


async def dry_run(client: httpx.AsyncClient, number: str) -> httpx.Response:
    return await client.get("/v1/route", params={"number": number})


async def routes_without_version(client: httpx.AsyncClient) -> list[dict[str, object]]:
    answers = [(await dry_run(client, route.number)).json() for route in ROUTES]
    return [{k: v for k, v in answer.items() if k != "version"} for answer in answers]


async def test_each_number_goes_to_its_gateways_in_order(routing_api: httpx.AsyncClient) -> None:
    version = await seed(routing_api, "127.0.0.1", 6000)
    assert version > 0
    ports = gateway_ports(6000)
    assert sorted(ports.values()) == list(range(6000, 6000 + len(GATEWAYS)))
    for route in ROUTES:
        if route.rule is None:
            continue
        answer = (await dry_run(routing_api, route.number)).json()
        assert answer["rule"]["id"] == route.rule
        hops = [(hop["id"], hop["address"]) for hop in answer["gateways"]]
        assert hops == [(gw, f"sip:127.0.0.1:{ports[gw]}") for gw in route.gateways]


async def test_the_unrouted_number_has_no_rule(routing_api: httpx.AsyncClient) -> None:
    await seed(routing_api, "127.0.0.1", 6000)
    [unrouted] = [route for route in ROUTES if route.rule is None]
    assert (await dry_run(routing_api, unrouted.number)).status_code == 404


async def test_seeding_twice_gives_the_same_routes(routing_api: httpx.AsyncClient) -> None:
    first = await seed(routing_api, "127.0.0.1", 6000)
    before = await routes_without_version(routing_api)
    assert await seed(routing_api, "127.0.0.1", 6000) > first
    assert await routes_without_version(routing_api) == before


def test_an_api_that_does_not_answer_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--api", "http://127.0.0.1:9"]) == 1  # the discard port: nothing listens
    error = capsys.readouterr().err
    assert error.startswith("seed: the routing API at http://127.0.0.1:9 failed:")
    assert "Traceback" not in error
