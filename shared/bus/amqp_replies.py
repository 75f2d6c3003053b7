"""Requests waiting for their reply over RabbitMQ's direct reply-to, by correlation id.

A request leaves on its link's requester channel, the one consuming the replies
(``amq.rabbitmq.reply-to``), so its reply can only come back on that link: when
the link is lost its requests fail at once instead of waiting out their timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from shared.bus.amqp_link import Link
from shared.bus.base import BusUnavailable


@dataclass(eq=False)
class PendingRequest:
    """A request waiting for its reply, and the link it left on (the only way back for it)."""

    future: asyncio.Future[bytes]
    link: Link | None = None


class PendingReplies:
    """The requests in flight, matched with their replies as these arrive."""

    def __init__(self) -> None:
        self._waiting: dict[str, PendingRequest] = {}

    def expect(self, correlation_id: str) -> PendingRequest:
        """A new request under ``correlation_id``; `forget` it once answered or given up."""
        request = PendingRequest(asyncio.get_running_loop().create_future())
        self._waiting[correlation_id] = request
        return request

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        """Consumer of the direct reply-to queue: hand the reply to its request, if still there."""
        request = self._waiting.get(message.correlation_id or "")
        if request is not None and not request.future.done():
            request.future.set_result(message.body)

    def fail_on(self, link: Link, reason: str) -> None:
        """Fail the requests that left on ``link``: their replies were lost with it."""
        for request in self._waiting.values():
            if request.link is link and not request.future.done():
                request.future.set_exception(BusUnavailable(f"connection lost: {reason}"))
