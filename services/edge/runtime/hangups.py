"""Sending a hang-up's BYEs through this process's sockets, and taking their answers.

Why apart from the proxy core: these BYEs start at the edge (no request came
in), and the core, a proxy, keeps no transaction for them; this keeps one for
each BYE it sends, for as long as the hang-up waits.  Each BYE leaves by the
interface toward its next hop, over UDP retransmitted from T1 doubling (RFC
3261 Timer E) until answered or `timeout`, over a stream once: to the callee
on its connection or a new one, to the caller on its open connection only (a
flow ends with its connection, RFC 5626: a new one to where the caller was
may reach someone else).  Their final answers are claimed before the core
sees them (`claims`: nothing to look at while no hang-up waits).  Each BYE's
outcome becomes an `edge.call.ended` with ``by_edge`` (the record's
``hangup_side: edge``), under the record's Call-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

from services.edge.control.byes import BRANCH_MARK, Bye
from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.runtime.publisher import EventPublisher
from services.edge.runtime.sockets import EdgeSockets
from shared.sip.errors import SipError
from shared.sip.message import Response, parse_message
from shared.sip.transport.base import TransportError
from shared.sip.transport.destination import Destination

log = logging.getLogger(__name__)

MARK: Final = BRANCH_MARK.encode()
NO_ANSWER: Final = 408
"""A BYE's outcome when no final answer came in time (what `edge.call.ended` says then)."""
NOT_SENT: Final = 503
"""A BYE's outcome when it could not be sent (no socket, no flow, a refused connection)."""


@dataclass(frozen=True, slots=True)
class ByeOutcome:
    """What became of one BYE: the final status (`NO_ANSWER`, `NOT_SENT`) and why."""

    side: str
    status: int
    reason: str


class Hangups:
    """The BYEs this process sent for hang-ups, waiting for their answers."""

    def __init__(
        self,
        sockets: EdgeSockets,
        publisher: EventPublisher,
        events: CallEvents | None,
        *,
        t1: float = 0.5,
        timeout: float = 4.0,
    ) -> None:
        self.sockets = sockets
        self.publisher = publisher
        self.events = events
        self.t1 = t1
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[Response]] = {}

    def claims(self, data: bytes, source: Destination) -> bool:
        """Whether `data` answers one of our BYEs (then it is taken here, not proxied)."""
        if not self._pending or MARK not in data or not data.startswith(b"SIP/2.0 "):
            return False
        try:
            message = parse_message(data)
            branch = message.top_branch if isinstance(message, Response) else None
        except SipError:
            return False
        waiting = self._pending.get(branch or "")
        if waiting is None or not isinstance(message, Response):
            return False
        if message.status >= 200 and not waiting.done():
            waiting.set_result(message)
        return True  # a provisional, or a final retransmitted: absorbed

    async def end(self, call_id: str, byes: list[Bye]) -> list[ByeOutcome]:
        """Send `byes` (of the record `call_id`) at once; their outcomes once all are known."""
        outcomes = await asyncio.gather(*(self._one(call_id, bye) for bye in byes))
        return list(outcomes)

    async def _one(self, call_id: str, bye: Bye) -> ByeOutcome:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Response] = loop.create_future()
        self._pending[bye.branch] = answered
        sent_at = loop.time()
        try:
            outcome = await self._exchange(bye, answered)
        finally:
            del self._pending[bye.branch]
        self._publish(call_id, bye, outcome.status, sent_at)
        return outcome

    async def _exchange(self, bye: Bye, answered: asyncio.Future[Response]) -> ByeOutcome:
        data, destination = bye.request.to_bytes(), bye.destination
        try:
            if destination.transport == "udp":
                return await self._over_udp(bye, data, answered)
            if (
                bye.side == "caller"
                and self.sockets.stream(destination.transport).connection(destination) is None
            ):
                return ByeOutcome(bye.side, NOT_SENT, "the caller's connection is closed")
            await self.sockets.send_stream(data, destination)
        except (TransportError, OSError) as error:
            return ByeOutcome(bye.side, NOT_SENT, f"not sent: {error}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                response = await asyncio.shield(answered)
            return ByeOutcome(bye.side, response.status, response.reason)
        return ByeOutcome(bye.side, NO_ANSWER, "no answer")

    async def _over_udp(
        self, bye: Bye, data: bytes, answered: asyncio.Future[Response]
    ) -> ByeOutcome:
        loop = asyncio.get_running_loop()
        deadline, interval = loop.time() + self.timeout, self.t1
        while (left := deadline - loop.time()) > 0:
            self.sockets.send_udp(data, bye.destination)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, left)):
                    response = await asyncio.shield(answered)
                return ByeOutcome(bye.side, response.status, response.reason)
            interval *= 2
        return ByeOutcome(bye.side, NO_ANSWER, "no answer")

    def _publish(self, call_id: str, bye: Bye, status: int, sent_at: float) -> None:
        events = self.events
        if events is None:
            return
        from_tag, to_tag = bye.tags
        notes = CallNotes(call_id, from_tag, to_tag, sent_at, events.wall_offset)
        self.publisher.offer(events.ended(notes, status, by_edge=True).event)
        log.info("hang-up: BYE to the %s of %s answered %d", bye.side, call_id, status)
