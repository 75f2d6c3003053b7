"""The proxy core's round trips, run as tasks off the call path and fed back into the core.

A REGISTER to the registrar, a location lookup in Redis, DNS for a next hop given by
name, a call's limits and fraud counts, rtpengine's rewrite of an SDP and a failed
authentication's count each run as one task; the core holds the request meanwhile
(its server transaction absorbs retransmissions) and gets the outcome through
`deliver`, which runs the actions that come back.  Each is bounded by its own
timeout, so a slow store or DNS server delays the requests that need it only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from services.edge.feeds.location import LocationFeed
from services.edge.feeds.protection import ProtectionFeed
from services.edge.proxy.actions import (
    Acquire,
    Action,
    AuthFailed,
    Lookup,
    Media,
    Register,
    Resolve,
    ResolveAck,
    Screen,
)
from services.edge.proxy.core import Proxy
from services.edge.runtime.fraud import FraudRunner
from services.edge.runtime.limits import LimitsRunner
from services.edge.runtime.media import MediaRunner
from shared.bus import Bus, BusUnavailable
from shared.contracts.registrar import (
    REGISTER_QUEUE,
    REGISTER_TIMEOUT,
    RegisterReply,
    RegisterRequest,
)
from shared.dns.resolver import DnsResolver
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

MAX_HELD_ANSWERS = 1000
"""Answers to failed authentications held back at once; past it they go out undelayed."""

RoundTrip = Register | Lookup | Resolve | ResolveAck | AuthFailed | Acquire | Screen | Media


class RoundTrips:
    """Runs one worker's round trips; `deliver` carries the core's answer to each out."""

    def __init__(
        self,
        proxy: Proxy,
        bus: Bus,
        dns: DnsResolver,
        deliver: Callable[[list[Action]], None],
        *,
        feed: LocationFeed | None = None,
        protection: ProtectionFeed | None = None,
        media: MediaRunner | None = None,
        instance: str = "",
    ) -> None:
        self.proxy = proxy
        self.dns = dns
        self.media = media
        self.limits: LimitsRunner | None = None
        self.fraud: FraudRunner | None = None
        self.flow_instance: Callable[[Destination], str] = lambda _source: instance
        """The instance of the worker holding a phone's flow: the registrar records it as
        the binding's edge, so that worker keeps the binding alive on its connection."""
        self._bus = bus
        self._deliver = deliver
        self._feed = feed
        self._protection = protection
        self._held_answers = 0
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, action: RoundTrip) -> None:
        if isinstance(action, Register):
            self._task(self._register(action))
        elif isinstance(action, Lookup):
            self._task(self._lookup(action))
        elif isinstance(action, Resolve | ResolveAck):
            self._task(self._resolve(action))
        elif isinstance(action, AuthFailed):
            self._task(self._auth_failed(action))
        elif isinstance(action, Acquire | Screen):
            self._task(self._ask(action))
        else:
            self._task(self._media(action))

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, action: Register) -> None:
        source = action.source
        request = RegisterRequest(
            sip=action.data,
            source_host=source.host,
            source_port=source.port,
            transport=source.transport,
            edge=self.flow_instance(source),
            edge_address=action.edge_address,
            connection_id=source.connection_id,
        )
        reply: bytes | None = None
        try:
            body = await self._bus.request(
                REGISTER_QUEUE, request.to_bytes(), timeout=REGISTER_TIMEOUT
            )
            answer = RegisterReply.model_validate_json(body)
            reply = answer.sip
            failed = answer.failed_auth
            if failed is not None:
                await self._count_failure(source, failed.user, failed.realm, "REGISTER")
        except (TimeoutError, BusUnavailable, ValidationError) as error:
            log.warning(
                "REGISTER from %s not answered by the registrar: %s",
                source.host,
                f"{type(error).__name__}: {error}",
            )
        self._deliver(self.proxy.registered(action.server, reply, self._loop.time()))

    async def _lookup(self, action: Lookup) -> None:
        failed = self._feed is None
        if self._feed is not None:
            try:
                await self._feed.resolve(action.query)
            except (RedisError, OSError) as error:
                log.warning("location lookup %s failed: %s", action.query, error)
                failed = True
        self._deliver(self.proxy.resume(action.server, self._loop.time(), failed=failed))

    async def _ask(self, action: Acquire | Screen) -> None:
        """A parked call's shared limits or fraud counts (None: unknown), then its routing."""
        if isinstance(action, Acquire):
            limited = await self.limits.acquire(action.query) if self.limits else None
            self._deliver(self.proxy.limited(action.server, limited, self._loop.time()))
        else:
            screened = await self.fraud.check(action.query) if self.fraud else None
            self._deliver(self.proxy.screened(action.server, screened, self._loop.time()))

    async def _resolve(self, action: Resolve | ResolveAck) -> None:
        """Fill the DNS cache (every failure is cached too), then route the request (or the
        stateless ACK) again."""
        await self.dns.fetch(list(action.keys))
        now = self._loop.time()
        if isinstance(action, Resolve):
            self._deliver(self.proxy.resume(action.server, now))
        else:
            self._deliver(self.proxy.ack_resolved(action.ticket, now))

    async def _media(self, action: Media) -> None:
        """rtpengine's rewrite of an SDP (bounded by the client's retries), back to the core."""
        sdp = None if self.media is None else await self.media.run(action)
        if action.ticket:
            self._deliver(self.proxy.media_done(action.ticket, sdp, self._loop.time()))

    async def _auth_failed(self, action: AuthFailed) -> None:
        await self._count_failure(action.source, action.user, action.realm, action.method)
        self._deliver(self.proxy.refuse(action.server, self._loop.time()))

    async def _count_failure(self, source: Destination, user: str, realm: str, method: str) -> None:
        """Count a failed authentication, then hold its answer back as the count asks."""
        if self._protection is None:
            return
        delay = await self._protection.auth_failed(source, user, realm, method)
        if delay <= 0 or self._held_answers >= MAX_HELD_ANSWERS:
            return
        self._held_answers += 1
        try:
            await asyncio.sleep(delay)  # this request's task only: the loop serves the others
        finally:
            self._held_answers -= 1
