"""Admin security of the real processes: the token on every `/v1` route, on the API documents
and `/metrics`, secrets kept out of logs.

Every service runs as its own process (`python -m services.<name>`) and all
of them in the all-in-one (`python -m services`), on a fresh namespace,
with `CALLMESH_API_TOKEN` and `CALLMESH_TOPOLOGY_KEYS` set, their stdout
(one JSON line per log event) kept.  The routes come from each process's
own OpenAPI document, so a route added later is covered without editing
this file.  That passwords are stored only as HA1 is asserted by
`tests/services/registrar/test_service.py::test_subscriber_crud_and_local_domains`
(the store holds the HA1 per algorithm) and by `test_the_password_is_stored_only_as_ha1` below.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import httpx
import pytest
import redis

from bench.registrar import Phone
from deploy.labs.postgres import drop_postgres, fresh_postgres
from services.edge.topology import new_secret
from shared.bus.amqp import AmqpBus
from shared.sip.auth.digest import compute_ha1
from shared.sip.message import Response, parse_message
from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.services.edge.support import LOOPBACK, SipClient
from tests.shared.api.support import Running, start, stop, wait_ready

pytestmark = pytest.mark.integration

TOKEN = f"tok-{secrets.token_hex(16)}"
PASSWORD = f"pw-{secrets.token_hex(12)}"
TOPOLOGY_SECRET = new_secret()
RECORD_ROUTE_SECRET = new_secret()
DATABASE_PASSWORD = f"db-{secrets.token_hex(12)}"
"""In the accounting database's URL (the server trusts local connections, so any will do)."""
DOMAIN = "example.com"
NAMESPACE = f"test-{uuid.uuid4().hex[:12]}"
PROCESSES = {
    "routing": "services.routing",
    "registrar": "services.registrar",
    "health": "services.health",
    "accounting": "services.accounting",
    "edge": "services.edge",
    "all": "services",
}
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Running]]:
    workdir = tmp_path_factory.mktemp("admin-security")
    url, database = asyncio.run(fresh_postgres())
    user, rest = url.split("://", 1)[1].split("@", 1)
    base = dict(os.environ)
    base.update(
        CALLMESH_NAMESPACE=NAMESPACE,
        CALLMESH_RABBITMQ_URL=RABBITMQ_URL,
        CALLMESH_REDIS_URL=REDIS_URL,
        CALLMESH_API_TOKEN=TOKEN,
        CALLMESH_TOPOLOGY_KEYS=f"1:{TOPOLOGY_SECRET}",
        CALLMESH_RECORD_ROUTE_KEYS=f"1:{RECORD_ROUTE_SECRET}",
        CALLMESH_TRUSTED_NETWORKS="192.0.2.0/24",  # the REGISTER below must authenticate
        CALLMESH_LOG_LEVEL="DEBUG",  # the most an operator can turn on
        CALLMESH_ACCOUNTING_DATABASE_URL=f"postgresql://{user}:{DATABASE_PASSWORD}@{rest}",
    )
    running: dict[str, Running] = {}
    try:
        for name, module in PROCESSES.items():
            running[name] = start(name, module, base, workdir)
            if name == "accounting":  # the edge's call control asks it (the all-in-one itself)
                accounting = f"http://{LOOPBACK}:{running[name].http_port}"
                base["CALLMESH_EDGE_ACCOUNTING_URL"] = accounting
        for each in running.values():
            wait_ready(each)
        yield running
    finally:
        stop(running.values())
        asyncio.run(drop_postgres(database))
        _remove_namespace(NAMESPACE)


def _remove_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    queues = [q.strip() for q in listing.stdout.splitlines() if q.startswith(f"{namespace}.")]

    async def delete() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            for queue in queues:
                await channel.queue_delete(queue)
            await channel.exchange_delete(AmqpBus(RABBITMQ_URL, namespace, "x", "y").exchange_name)

    asyncio.run(delete())


def v1_operations(running: Running) -> list[tuple[str, str]]:
    """(method, path with its parameters filled in) of every `/v1` operation in the OpenAPI."""
    with running.http(TOKEN) as client:
        spec = client.get("/openapi.json").json()
    found: list[tuple[str, str]] = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "sec-x1", path)
        found.extend((method, concrete) for method in operations if method in METHODS)
    return sorted(found)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    body: dict[str, Any] = {"json": {}} if method in ("put", "post", "patch") else {}
    return client.request(method.upper(), path, **body)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_every_v1_route_of_every_process_requires_the_token(
    processes: dict[str, Running], name: str
) -> None:
    running = processes[name]
    operations = v1_operations(running)
    assert operations, f"{name} exposes no /v1 route?"  # the edge: /v1/protection/...
    with running.http() as anonymous, running.http("wrong") as wrong, running.http(TOKEN) as ok:
        for method, path in operations:
            missing = call(anonymous, method, path)
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.headers["www-authenticate"] == "Bearer"
            assert call(wrong, method, path).status_code == 401, (method, path)
            allowed = call(ok, method, path)
            assert allowed.status_code != 401, (method, path, allowed.text)
            assert allowed.status_code < 500, (method, path, allowed.text)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_api_documents_and_metrics_need_the_token_probes_do_not(
    processes: dict[str, Running], name: str
) -> None:
    running = processes[name]
    with running.http() as anonymous, running.http("wrong") as wrong, running.http(TOKEN) as ok:
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert anonymous.get(path).status_code == 401, path
            assert wrong.get(path).status_code == 401, path
            assert ok.get(path).status_code == 200, path
        for path in ("/livez", "/readyz"):
            assert anonymous.get(path).status_code == 200, path


def test_the_all_in_one_serves_every_route_of_the_single_services(
    processes: dict[str, Running],
) -> None:
    singles = {op for name in PROCESSES if name != "all" for op in v1_operations(processes[name])}
    assert set(v1_operations(processes["all"])) == singles


def test_the_password_is_stored_only_as_ha1(processes: dict[str, Running]) -> None:
    subscriber(processes["all"], "bob")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stored = b"".join(
            str(_dump(client, key)).encode()
            for key in client.scan_iter(match=f"{NAMESPACE}:*", count=1000)
        )
    finally:
        client.close()
    assert compute_ha1("bob", DOMAIN, PASSWORD).encode() in stored
    assert PASSWORD.encode() not in stored


def _dump(client: redis.Redis, key: bytes) -> list[object]:
    kind = client.type(key)
    if kind == b"hash":
        return list(client.hgetall(key).items())
    if kind == b"string":
        return [client.get(key)]
    return []


def subscriber(running: Running, user: str) -> None:
    with running.http(TOKEN) as client:
        body = {"domain": DOMAIN, "password": PASSWORD}
        client.put(f"/v1/subscribers/{user}@{DOMAIN}", json=body).raise_for_status()


def register(running: Running, user: str, password: str) -> int:
    """A digest REGISTER through the all-in-one's edge: the final status after the challenge."""
    client = SipClient(running.sip_port)
    try:
        phone = Phone(user, DOMAIN, password, host=LOOPBACK, port=client.port, algorithm="MD5")
        client.send(phone.register())
        challenge = parse_message(client.final())
        assert isinstance(challenge, Response) and challenge.status == 401, challenge
        phone.learn(challenge)
        client.send(phone.register())
        final = parse_message(client.final())
        assert isinstance(final, Response)
        return final.status
    finally:
        client.close()


def test_no_secret_reaches_any_log_line(processes: dict[str, Running]) -> None:
    everything = processes["all"]
    subscriber(everything, "alice")
    assert register(everything, "alice", PASSWORD) == 200
    assert register(everything, "alice", "not-the-password") == 403
    with everything.http(TOKEN) as client:  # failing requests, with the right token
        assert client.put("/v1/subscribers/x@", json={"password": PASSWORD}).status_code == 422
        assert client.get("/v1/route", params={"number": "x"}).status_code == 422
    with everything.http("wrong-" + TOKEN) as client:
        assert client.get("/v1/subscribers").status_code == 401
    for running in processes.values():
        running.process.terminate()  # the stop path logs too
        running.process.wait(15)
    ha1 = compute_ha1("alice", DOMAIN, PASSWORD)
    secrets_ = {
        "token": TOKEN,
        "password": PASSWORD,
        "ha1": ha1,
        "topology": TOPOLOGY_SECRET,
        "record-route key": RECORD_ROUTE_SECRET,
        "database password": DATABASE_PASSWORD,
    }
    for running in processes.values():
        lines = running.lines()
        assert any('"msg":"started"' in line for line in lines), lines  # the capture works
        for line in lines:
            assert _is_json_object(line), f"{running.name} wrote a line that is not JSON: {line}"
            for what, secret in secrets_.items():
                assert secret not in line, f"{running.name} logged the {what}: {line}"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
