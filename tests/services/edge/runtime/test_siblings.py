"""The other edges for a trace: announced in the real Redis, asked over real HTTP sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from services.edge.runtime import siblings as module
from services.edge.runtime.siblings import Siblings, advertised_url
from shared.settings import Settings
from shared.store import Store

pytestmark = pytest.mark.integration

MESSAGE = {"time": 1.0, "message": "INVITE sip:x SIP/2.0", "call_id": "c@x"}
Handler = Callable[[bytes], Awaitable[bytes | None]]


async def http_server(handler: Handler) -> tuple[asyncio.Server, str]:
    """A real HTTP/1.1 server on loopback: `handler` gets the request head, returns the
    whole response (None: it never answers)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        answer = await handler(head)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def response(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


@dataclass
class Edges:
    urls: dict[str, str]
    heads: list[bytes]
    """The request heads the answering edge ("b") got."""


@pytest.fixture
async def servers() -> AsyncIterator[Edges]:
    """Edges that answer a trace (b), answer 404 (c), 500 (d), never answer (e), are gone (f)."""
    heads: list[bytes] = []

    async def trace(head: bytes) -> bytes:
        heads.append(head)
        return response("200 OK", json.dumps({"messages": [MESSAGE]}).encode())

    async def absent(head: bytes) -> bytes:
        return response("404 Not Found", b'{"detail": "no"}')

    async def broken(head: bytes) -> bytes:
        return response("500 Internal Server Error", b"oops")

    async def silent(head: bytes) -> None:
        await asyncio.sleep(10)

    running = [await http_server(h) for h in (trace, absent, broken, silent)]
    gone, url = await http_server(absent)
    gone.close()
    await gone.wait_closed()
    urls = dict(zip(("b", "c", "d", "e"), (u for _, u in running), strict=True))
    yield Edges({**urls, "f": url}, heads)
    for server, _ in running:
        server.close()


async def test_each_edge_announces_itself_and_asks_the_others_within_the_timeout(
    redis_store: Store, servers: Edges
) -> None:
    me = Siblings(redis_store, "a", "http://127.0.0.1:1", "t0k", timeout=0.5)
    await me.start()
    for name in ("b", "c", "d", "e", "f"):
        await redis_store.redis.set(redis_store.key("edges", "http", name), servers.urls[name])
    ttl = await redis_store.redis.ttl(redis_store.key("edges", "http", "a"))
    assert 0 < ttl <= module.ANNOUNCE_TTL
    assert set(await me.others()) == {"b", "c", "d", "e", "f"}  # not itself
    started = time.monotonic()
    found = {s.edge: s for s in await me.traces("c@x/1")}
    assert time.monotonic() - started < 2  # asked at once: one timeout, not one each
    assert found["b"].messages == [MESSAGE] and not found["b"].failure
    assert found["c"].messages == [] and not found["c"].failure  # 404: none there
    assert found["d"].failure == "answered 500"
    assert found["e"].failure.startswith("no answer") and found["f"].failure
    [head] = servers.heads
    assert head.startswith(b"GET /v1/calls/c%40x%2F1/trace?scope=edge HTTP/1.1")
    assert b"authorization: bearer t0k" in head.lower()
    await me.stop()
    assert await redis_store.redis.get(redis_store.key("edges", "http", "a")) is None


async def test_an_edge_alone_asks_nobody(redis_store: Store) -> None:
    me = Siblings(redis_store, "a", "http://127.0.0.1:1", None, timeout=0.5)
    await me.start()
    assert await me.traces("c@x") == []
    await me.stop()


def test_the_advertised_address_is_the_setting_else_the_listening_one() -> None:
    assert advertised_url(Settings(http_listen="127.0.0.1:8081"), "") == "http://127.0.0.1:8081"
    assert advertised_url(Settings(http_listen="[::1]:8081"), "") == "http://[::1]:8081"
    assert advertised_url(Settings(), "edge1.example:80") == "http://edge1.example:80"
    assert advertised_url(Settings(), "https://edge1.example/") == "https://edge1.example"
    wildcard = advertised_url(Settings(http_listen="0.0.0.0:8081", api_token="x"), "")
    assert not wildcard.startswith("http://0.0.0.0")


async def test_a_hang_up_is_passed_on_to_the_edge_named_and_its_answer_returned(
    redis_store: Store,
) -> None:
    """Its answer if it is the call's (200, 404, 409); None for anything else, so that the
    edge asked by the operator sends the BYEs itself."""
    heads: list[bytes] = []

    def answering(status: str, body: bytes) -> Handler:
        async def handle(head: bytes) -> bytes:
            heads.append(head)
            return response(status, body)

        return handle

    async def silent(head: bytes) -> None:
        await asyncio.sleep(10)

    handlers = {
        "b": answering("200 OK", b'{"call_id": "c@x/1", "byes": []}'),
        "c": answering("409 Conflict", b'{"detail": "the call has ended already"}'),
        "d": answering("401 Unauthorized", b'{"detail": "bad token"}'),
        "e": answering("200 OK", b"not json"),
        "f": silent,
    }
    running = {name: await http_server(handler) for name, handler in handlers.items()}
    for name, (_, url) in running.items():
        await redis_store.redis.set(redis_store.key("edges", "http", name), url)
    me = Siblings(redis_store, "a", "http://127.0.0.1:1", "t0k", timeout=0.5)
    done = await me.hang_up("b", "c@x/1", within=2)
    assert done == module.SiblingAnswer(200, {"call_id": "c@x/1", "byes": []})
    assert heads[0].startswith(b"POST /v1/calls/c%40x%2F1:hangup?scope=edge HTTP/1.1")
    assert b"authorization: bearer t0k" in heads[0].lower()
    ended = await me.hang_up("c", "c@x/1", within=2)
    assert ended == module.SiblingAnswer(409, {"detail": "the call has ended already"})
    started = time.monotonic()
    for name in ("d", "e", "f", "gone"):
        assert await me.hang_up(name, "c@x/1", within=0.5) is None
    assert time.monotonic() - started < 3
    for server, _ in running.values():
        server.close()


async def test_a_transfer_is_passed_on_with_its_target_and_its_answer_returned(
    redis_store: Store,
) -> None:
    """Its answer if it is the call's (202 begun, 404, 409, 422, 503, and 504: its worker did
    not answer, the transfer may have begun there); None for anything else."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        seen.append(head + await reader.readexactly(length))
        status = "202 Accepted" if b"agent7" in seen[-1] else "500 Internal Server Error"
        status = "504 Gateway Timeout" if b"agent8" in seen[-1] else status
        writer.write(response(status, b'{"call_id": "c@x/1", "state": "transferring"}'))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    await redis_store.redis.set(redis_store.key("edges", "http", "b"), url)
    me = Siblings(redis_store, "a", "http://127.0.0.1:1", "t0k", timeout=0.5)
    begun = await me.transfer("b", "c@x/1", "sip:agent7@192.0.2.7", within=2)
    assert begun == module.SiblingAnswer(202, {"call_id": "c@x/1", "state": "transferring"})
    assert seen[0].startswith(b"POST /v1/calls/c%40x%2F1:transfer?scope=edge HTTP/1.1")
    assert seen[0].endswith(b'{"to":"sip:agent7@192.0.2.7"}')
    assert await me.transfer("b", "c@x/1", "sip:other@192.0.2.7", within=2) is None  # a 500
    late = await me.transfer("b", "c@x/1", "sip:agent8@192.0.2.7", within=2)
    assert late is not None and late.status == 504  # passed on: not begun again here
    assert await me.transfer("gone", "c@x/1", "sip:agent7@192.0.2.7", within=0.5) is None
    server.close()
