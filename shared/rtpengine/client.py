"""An asyncio client of rtpengine's ng protocol over UDP, for several instances.

Every call is bounded: a request is sent, and sent again with the same cookie
(rtpengine answers a repeat from its cache) after each ``timeout`` without a
reply, ``retries`` times; past that it raises ``RtpengineUnavailableError`` and the
instance counts as down until it answers a ``ping`` again. So a caller waits
at most ``timeout * (retries + 1)``.

Instances are ranked per call by the hash of its Call-ID (``instances.ranked``):
``offer`` goes to the first live one; the commands of an existing call go down
the same ranking, live instances only, and move on when one does not know the
call, so a call placed on the second instance while the first was down is
still found once the first is back. Nothing is stored per call.

Each instance has its own connected UDP socket: the kernel drops datagrams
from any other address, and the exchange drops replies nobody awaits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from shared.rtpengine import metrics
from shared.rtpengine.bencode import Encodable
from shared.rtpengine.instances import Instance, ranked
from shared.rtpengine.protocol import (
    COMMANDS,
    Exchange,
    NgCommandError,
    NgProtocolError,
    Reply,
)
from shared.sip.transport.base import LogThrottle

log = logging.getLogger("callmesh.rtpengine")


class RtpengineUnavailableError(Exception):
    """No reply in time, or no live instance: the caller decides (503, or carry on unrelayed)."""


def _unknown_call(reply: Reply) -> bool:
    """Whether the instance does not hold the call: an error, or a ``delete``'s warning."""
    said = reply.text("error-reason") if reply.result == "error" else reply.text("warning")
    return said is not None and ("unknown call" in said.lower() or "not found" in said.lower())


class _Endpoint(asyncio.DatagramProtocol):
    """One instance's socket: hands every datagram to the client."""

    def __init__(self, client: RtpengineClient, instance: Instance) -> None:
        self.client = client
        self.instance = instance
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client.received(self.instance, data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP unreachable and the like: the request times out and says so."""
        log.debug("rtpengine %s: %s", self.instance.name, exc)


class RtpengineClient:
    """The instances of ``CALLMESH_RTPENGINE``, their sockets, liveness and pending requests."""

    def __init__(
        self, instances: tuple[Instance, ...], *, timeout: float = 1.0, retries: int = 2
    ) -> None:
        self.instances = instances
        self.timeout = timeout
        self.retries = retries
        self.exchange = Exchange()
        self.alive = {instance: True for instance in instances}
        self._endpoints: dict[Instance, _Endpoint] = {}
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._malformed_logged = LogThrottle()
        self._withdrawals: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open one socket per instance (UDP: nothing is sent yet)."""
        loop = asyncio.get_running_loop()
        for instance in self.instances:
            _, endpoint = await loop.create_datagram_endpoint(
                lambda instance=instance: _Endpoint(self, instance),  # type: ignore[misc]
                remote_addr=(instance.host, instance.port),
            )
            self._endpoints[instance] = endpoint
            metrics.UP.labels(instance.name).set(1)

    def close(self) -> None:
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()
        for future in self._pending.values():
            future.cancel()
        for task in self._withdrawals:
            task.cancel()

    def received(self, instance: Instance, data: bytes) -> None:
        try:
            matched = self.exchange.receive(data)
        except NgProtocolError as error:
            metrics.ERRORS.labels("malformed", instance.name).inc()
            unlogged = self._malformed_logged.due(instance.name, time.monotonic())
            if unlogged is not None:
                log.warning(
                    "rtpengine %s sent a malformed reply: %s (%d more since the last such line)",
                    instance.name,
                    error,
                    unlogged,
                )
            return
        if matched is not None:
            future = self._pending.get(matched[0])
            if future is not None and not future.done():
                future.set_result(matched[1])

    async def request(
        self, instance: Instance, command: str, params: Mapping[str, Encodable]
    ) -> Reply:
        """``command`` on ``instance``, retried; the reply whatever its result."""
        endpoint = self._endpoints[instance]
        assert endpoint.transport is not None, "start() first"
        label = command if command in COMMANDS else "other"
        metrics.REQUESTS.labels(label).inc()
        cookie, datagram = self.exchange.request(command, params)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[cookie] = future
        started = time.perf_counter()
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    metrics.RETRANSMISSIONS.labels(instance.name).inc()
                endpoint.transport.sendto(datagram)
                try:
                    async with asyncio.timeout(self.timeout):
                        reply = await asyncio.shield(future)
                except TimeoutError:
                    continue
                metrics.LATENCY.labels(label).observe(time.perf_counter() - started)
                return reply
        finally:
            self._pending.pop(cookie, None)
            self.exchange.forget(cookie)
        metrics.ERRORS.labels("timeout", instance.name).inc()
        self._mark(instance, alive=False)
        raise RtpengineUnavailableError(
            f"rtpengine {instance.name}: no reply to {command!r} "
            f"after {self.retries + 1} tries of {self.timeout} s"
        )

    async def offer(
        self, call_id: str, params: Mapping[str, Encodable], *, new_call: bool = False
    ) -> Reply:
        """``offer`` to the call's first live instance; ``params`` carry from-tag, sdp, flags.

        ``new_call``: the offer of a call rtpengine has not seen. When it gets no reply,
        the instance may still have taken it (late, or only the replies were lost) and
        nothing else would delete it (the call goes on unrelayed, or is refused), so a
        ``delete`` of the call follows to that instance, in the background. Not for a
        re-INVITE's offer: that delete would end a live call's media.
        """
        live = self._live(call_id)
        if not live:
            metrics.ERRORS.labels("unavailable", "none").inc()
            raise RtpengineUnavailableError("no rtpengine instance is up")
        instance = live[0]
        try:
            reply = await self.request(instance, "offer", {**params, "call-id": call_id})
        except RtpengineUnavailableError:
            if new_call:
                self._withdraw(instance, call_id)
            raise
        return self._checked(instance, "offer", reply)

    async def command(self, command: str, call_id: str, params: Mapping[str, Encodable]) -> Reply:
        """``answer``, ``delete``, ``query``… of an existing call: the instance that knows it.

        When no live instance knows the call, the last one's answer counts:
        ``NgCommandError`` (``Unknown call-id``) for most commands, ``ok`` with
        a warning for ``delete``. ``RtpengineUnavailableError`` when none answered.
        """
        last: tuple[Instance, Reply] | None = None
        for instance in self._live(call_id):
            reply = await self.request(instance, command, {**params, "call-id": call_id})
            last = instance, reply
            if not _unknown_call(reply):
                break
        if last is None:
            metrics.ERRORS.labels("unavailable", "none").inc()
            raise RtpengineUnavailableError("no rtpengine instance is up")
        return self._checked(last[0], command, last[1])

    async def ping(self, instance: Instance) -> bool:
        """Whether ``instance`` answers ``pong``; updates its liveness either way."""
        try:
            reply = await self.request(instance, "ping", {})
        except RtpengineUnavailableError:
            return False
        self._mark(instance, alive=reply.result == "pong")
        return self.alive[instance]

    async def probe(self, interval: float) -> None:
        """Ping every instance every ``interval`` seconds, forever (a background task)."""
        while True:
            await asyncio.gather(*(self.ping(instance) for instance in self.instances))
            await asyncio.sleep(interval)

    def _withdraw(self, instance: Instance, call_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._delete_quietly(instance, call_id))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def _delete_quietly(self, instance: Instance, call_id: str) -> None:
        """A timed-out offer's ``delete``: bounded by its retries; the instance's own
        timeout is what is left if this one gets no reply either."""
        try:
            reply = await self.request(instance, "delete", {"call-id": call_id})
        except RtpengineUnavailableError as error:
            log.info("rtpengine delete of %s after its offer timed out: %s", call_id, error)
            return
        if reply.result == "error":
            metrics.ERRORS.labels("refused", instance.name).inc()

    def _live(self, call_id: str) -> list[Instance]:
        return [instance for instance in ranked(call_id, self.instances) if self.alive[instance]]

    def _checked(self, instance: Instance, command: str, reply: Reply) -> Reply:
        try:
            return reply.checked(command)
        except NgCommandError:
            metrics.ERRORS.labels("refused", instance.name).inc()
            raise

    def _mark(self, instance: Instance, *, alive: bool) -> None:
        if self.alive[instance] != alive:
            log.warning("rtpengine %s is %s", instance.name, "up" if alive else "down")
        self.alive[instance] = alive
        metrics.UP.labels(instance.name).set(1 if alive else 0)
