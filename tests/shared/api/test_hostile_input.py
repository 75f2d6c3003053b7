"""Every `/v1` write route of the real all-in-one, attacked with hostile bodies.

`python -m services` runs with `CALLMESH_API_TOKEN` set, its log kept; the
routes come from its own OpenAPI document (fetched with the token), so a route
added later is attacked too. Every answer must be a 4xx — never a 500 — small,
without the secret planted in the body, and the process must still answer
after each route. Bodies over the limit are sent on a raw socket so the test
sees the 413 arrive before the body has been sent whole (Content-Length and
chunked).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.services.edge.support import LOOPBACK
from tests.shared.api.support import Running, start, stop, wait_ready

TOKEN = f"tok-{secrets.token_hex(16)}"
SECRET = f"pw-{secrets.token_hex(12)}"
TEN_MB = 10 * 1024 * 1024
MAX_BODY = 2 * 1024 * 1024
"""CALLMESH_API_MAX_BODY of the process under attack: not the default, to see it applied."""
WRITES = ("put", "post", "patch")
NUMBERS = ("priority", "strip", "interval", "weight", "failures_to_down", "cost")


def _numbers(value: str) -> bytes:
    return ("{" + ", ".join(f'"{name}": {value}' for name in NUMBERS) + "}").encode()


HOSTILE: dict[str, bytes] = {
    "nan": _numbers("NaN"),
    "infinity": _numbers("-Infinity"),
    "1e400": _numbers("1e400"),
    "huge-int": _numbers("1" + "0" * 5000),
    "long-secret": json.dumps(
        {"password": SECRET * 20_000, "domain": "bad domain", "description": "d" * 3000}
    ).encode(),
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep-extra": b'{"x": ' + b"[" * 900 + b"]" * 900 + b"}",
    "huge-array": json.dumps(
        {"gateways": ["1"] * 50_000, "destinations": [{"uri": "sip:a"}] * 5000}
    ).encode(),
    "string": b'"text"',
    "array": b"[]",
    "null": b"null",
    "number": b"123",
    "invalid-utf8": b'{"password": "\xff\xfe' + SECRET.encode() + b'"}',
    "empty": b"",
    "csv-huge-field": b"id,group,prefix,priority,gateways\nr1,0," + b"9" * 200_000 + b",0,1\n",
}


@pytest.fixture(scope="module")
def all_in_one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("hostile")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMESH_")}
    env |= {
        "CALLMESH_DATA_DIR": str(workdir),
        "CALLMESH_API_TOKEN": TOKEN,
        "CALLMESH_LOG_LEVEL": "DEBUG",
        "CALLMESH_API_MAX_BODY": str(MAX_BODY),
        "CALLMESH_METRICS_PUBLIC": "true",
    }
    running = start("all", "services", env, workdir)
    try:
        wait_ready(running)
        yield running
    finally:
        stop([running])


def write_routes(running: Running) -> list[tuple[str, str]]:
    """(method, path with its parameters filled in) of every `/v1` write route."""
    with running.http(TOKEN) as client:
        spec = client.get("/openapi.json").json()
    found = [
        (method.upper(), re.sub(r"\{[^}]+\}", "hx1", path))
        for path, operations in spec["paths"].items()
        if path.startswith("/v1")
        for method in operations
        if method in WRITES
    ]
    return sorted(found)


def test_every_write_route_answers_hostile_bodies_with_a_short_4xx(all_in_one: Running) -> None:
    routes = write_routes(all_in_one)
    assert ("POST", "/v1/rules:import") in routes and ("PUT", "/v1/subscribers/hx1") in routes
    with all_in_one.http(TOKEN) as client:
        for method, path in routes:
            for name, body in HOSTILE.items():
                for content_type in ("application/json", "text/csv"):
                    reply = client.request(
                        method, path, content=body, headers={"content-type": content_type}
                    )
                    where = (method, path, name, content_type, reply.status_code, reply.text[:200])
                    assert 400 <= reply.status_code < 500, where
                    assert SECRET not in reply.text, where
                    assert len(reply.content) < 4096, where
            assert client.get("/livez").status_code == 200, (method, path)
            assert client.request(method, path, json={}).status_code != 401  # positive control


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_over_the_limit_get_413_before_being_sent_whole(
    all_in_one: Running, chunked: bool
) -> None:
    for method, path in write_routes(all_in_one):
        if path == "/v1/rules:import":
            continue  # its own, larger limit (CALLMESH_API_MAX_IMPORT_BODY) is checked below
        status, body, sent = send_raw(all_in_one.http_port, method, path, TEN_MB, chunked)
        assert status in (404, 413), (method, path, status, body[:200])  # 404: reads no body
        assert sent < TEN_MB, (method, path, sent)
        assert SECRET.encode() not in body
    with all_in_one.http(TOKEN) as client:
        assert client.get("/livez").status_code == 200


def test_the_settings_reach_the_process(all_in_one: Running) -> None:
    description = "d" * (MAX_BODY - 100)  # over the default limit, under the configured one
    with all_in_one.http(TOKEN) as client:
        under = client.put("/v1/gateways/g1", json={"address": "sip:a", "description": description})
    with all_in_one.http() as anonymous:
        metrics = anonymous.get("/metrics")  # CALLMESH_METRICS_PUBLIC=true
        documents = anonymous.get("/openapi.json")
    assert under.status_code == 422  # read and validated: the description is too long
    assert metrics.status_code == 200
    assert documents.status_code == 401


def test_a_rate_deck_may_be_larger_than_a_json_body(all_in_one: Running) -> None:
    rows = "".join(f"r{n},0,{n},0,x\n" for n in range(200_000))  # about 3 MB
    with all_in_one.http(TOKEN) as client:
        reply = client.post(
            "/v1/rules:import", content=f"id,group,prefix,priority,gateways\n{rows}"
        )
    assert reply.status_code == 422  # read whole and parsed: the gateway x does not exist
    assert "unknown gateway" in reply.text


def test_the_log_has_one_line_per_refusal_and_no_secret(all_in_one: Running) -> None:
    with all_in_one.http(TOKEN) as client:
        client.put("/v1/subscribers/alice@example.com", json={"password": SECRET * 100})
    lines = all_in_one.lines()
    assert any('"msg":"request refused"' in line for line in lines)  # the capture works
    for line in lines:
        assert SECRET not in line, line
        assert "Traceback" not in line, line
        assert '"msg":"request failed"' not in line, line


def send_raw(port: int, method: str, path: str, size: int, chunked: bool) -> tuple[int, bytes, int]:
    """Send ``size`` bytes of body (a secret in it) until the server answers.

    Returns the status, what was read of the answer, and how much body was sent.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    piece = (b'{"password": "' + SECRET.encode()).ljust(64 * 1024, b"x")
    answer = b""
    sent = 0
    deadline = time.monotonic() + 30
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(head)
        while sent < size and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except OSError:
                break
            sent += len(piece)
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, sent
