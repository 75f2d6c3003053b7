"""The other edges of the cluster: a call's trace gathered across edges, a hang-up passed on.

A call may cross several edges (a caller's edge, then the carrier's); each keeps
its own messages.  Each edge's serving process writes its HTTP API's address
under ``{ns}:edges:http:{instance}`` with a time to live (`ANNOUNCE_TTL`,
renewed every `ANNOUNCE_EVERY`) and deletes it when it stops; a trace look-up
reads those keys and asks every other edge ``GET /v1/calls/{id}/trace?scope=edge``
(its own messages only: no edge asks further) at once, with the API token, within
`CALLMESH_TRACE_PEER_TIMEOUT`.  An edge that does not answer in time, or
answers an error, is named in the answer, so a partial trace says it is one.
A hang-up is passed on to the edge that answered the call (`hang_up`): only it
can reach a caller behind NAT that lets in what comes from that edge alone.

Why Redis: every edge already shares it (routing cache, registrations), so no new
list of edges needs configuring, and an edge that died stops being asked once its
key expires.  The address is ``CALLMESH_HTTP_ADVERTISE`` when set (an edge behind
NAT or in a container), else ``CALLMESH_HTTP_LISTEN`` (its host name for a wildcard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx
import redis.asyncio as aioredis

from shared.background import cancel_and_wait
from shared.settings import Settings
from shared.store import Store

log = logging.getLogger("callmesh.edge")

ANNOUNCE_TTL: Final = 30
ANNOUNCE_EVERY: Final = 10.0
MAX_SIBLINGS: Final = 256
"""Edges asked at most per look-up: a bound on one API call's fan-out."""
PASSED_ON_ANSWERS: Final = frozenset({200, 404, 409})
"""The answers of another edge to a hang-up that are the call's (done, no record, nothing
to end); any other (a token it does not share, an error) makes this edge do it itself."""
TRANSFER_ANSWERS: Final = frozenset({202, 404, 409, 422, 503, 504})
"""The same for a transfer passed on: begun, or refused for a reason of the call's; a 504
(its worker holding the call did not answer in time) too, as the transfer may have begun
there: this edge must not load the pair and start a second one."""
HANGUP_WITHIN: Final = 12.0
"""Seconds another edge has to answer a hang-up passed on (its BYEs wait up to 4 s, its
question to the accounting service up to ``CALLMESH_EDGE_ACCOUNTING_TIMEOUT``)."""


@dataclass(frozen=True, slots=True)
class SiblingAnswer:
    """Another edge's answer to a request passed on to it: its status and JSON body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SiblingTrace:
    """What one other edge answered: its messages of the call, or why it gave none."""

    edge: str
    messages: list[dict[str, Any]]
    failure: str = ""
    """Empty when it answered (a 404 is an answer: no message there)."""


def advertised_url(settings: Settings, advertise: str) -> str:
    """``http://host:port`` where the other edges reach this edge's API."""
    if advertise:
        return (advertise if "://" in advertise else f"http://{advertise}").rstrip("/")
    host, port = settings.http_address
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Siblings:
    """This edge's entry in the store, and the other edges' traces of a call."""

    def __init__(
        self, store: Store, instance: str, url: str, token: str | None, timeout: float
    ) -> None:
        self._store = store
        self._instance = instance
        self._url = url
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._running = False

    def _key(self, instance: str) -> str:
        return self._store.key("edges", "http", instance)

    async def start(self) -> None:
        self._running = True
        await self._announce()
        self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _announce(self) -> None:
        try:
            await self._store.redis.set(self._key(self._instance), self._url, ex=ANNOUNCE_TTL)
        except (aioredis.RedisError, OSError) as error:
            log.warning("edge: API address not announced to the other edges: %s", error)

    async def _renew(self) -> None:
        while self._running:
            await asyncio.sleep(ANNOUNCE_EVERY)
            await self._announce()

    async def stop(self) -> None:
        self._running = False
        await cancel_and_wait(self._task)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._store.redis.delete(self._key(self._instance))

    async def others(self) -> dict[str, str]:
        """The other edges announced now, by instance: their API's URL."""
        prefix = self._key("")
        keys = []
        async for key in self._store.redis.scan_iter(match=prefix + "*", count=500):
            name = (key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :]
            if name != self._instance:
                keys.append(name)
            if len(keys) >= MAX_SIBLINGS:
                break
        if not keys:
            return {}
        urls = await self._store.redis.mget([self._key(name) for name in keys])
        return {
            name: url.decode() if isinstance(url, bytes) else str(url)
            for name, url in zip(keys, urls, strict=True)
            if url is not None
        }

    async def traces(self, call_id: str) -> list[SiblingTrace]:
        """Every other edge's messages of the call, asked at once within the timeout."""
        try:
            others = await self.others()
        except (aioredis.RedisError, OSError) as error:
            return [SiblingTrace("?", [], f"the other edges unknown: {error}")]
        if not others:
            return []
        path = f"/v1/calls/{quote(call_id, safe='')}/trace"
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            return list(
                await asyncio.gather(
                    *(self._ask(client, edge, url + path) for edge, url in others.items())
                )
            )

    async def hang_up(self, edge: str, call_id: str, within: float) -> SiblingAnswer | None:
        """Ask `edge` to hang up `call_id` itself (``scope=edge``: it asks no further); None
        when it is not announced, gives no answer within `within` seconds, or no JSON."""
        return await self._pass_on(edge, call_id, "hangup", None, within, answers=PASSED_ON_ANSWERS)

    async def transfer(
        self, edge: str, call_id: str, to: str, within: float
    ) -> SiblingAnswer | None:
        """Ask `edge` to transfer `call_id` to `to` itself, as `hang_up` asks it to hang up."""
        answers = TRANSFER_ANSWERS
        return await self._pass_on(edge, call_id, "transfer", {"to": to}, within, answers=answers)

    async def _pass_on(
        self,
        edge: str,
        call_id: str,
        verb: str,
        body: dict[str, str] | None,
        within: float,
        *,
        answers: frozenset[int],
    ) -> SiblingAnswer | None:
        try:
            url = (await self.others()).get(edge)
        except (aioredis.RedisError, OSError):
            return None
        if url is None:
            return None
        path = f"/v1/calls/{quote(call_id, safe='')}:{verb}"
        try:
            async with (
                httpx.AsyncClient(timeout=within, headers=self._headers) as client,
                asyncio.timeout(within),
            ):
                reply = await client.post(url + path, params={"scope": "edge"}, json=body)
            answer = reply.json()
        except (httpx.HTTPError, TimeoutError, OSError, ValueError) as error:
            log.info("edge: %s of %s not passed on to %s: %s", verb, call_id, edge, error)
            return None
        if not isinstance(answer, dict) or reply.status_code not in answers:
            log.info("edge: %s of %s: %s answered %d", verb, call_id, edge, reply.status_code)
            return None
        return SiblingAnswer(reply.status_code, answer)

    async def _ask(self, client: httpx.AsyncClient, edge: str, url: str) -> SiblingTrace:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await client.get(url, params={"scope": "edge"})
        except (httpx.HTTPError, TimeoutError, OSError) as error:
            return SiblingTrace(edge, [], f"no answer ({type(error).__name__})")
        if reply.status_code == 404:
            return SiblingTrace(edge, [])
        if reply.status_code != 200:
            return SiblingTrace(edge, [], f"answered {reply.status_code}")
        try:
            messages = reply.json()["messages"]
        except (ValueError, KeyError, TypeError):
            return SiblingTrace(edge, [], "answered something that is not a trace")
        if not isinstance(messages, list):
            return SiblingTrace(edge, [], "answered something that is not a trace")
        return SiblingTrace(edge, [m for m in messages if isinstance(m, dict)])
