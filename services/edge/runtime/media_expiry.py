"""Deleting the rtpengine session of a call whose BYE never came.

A relayed call whose end no edge sees (a phone that vanished, a far end that
never hangs up, a BYE that went elsewhere) would keep its rtpengine session
until rtpengine's own timeout, which fires only on silent media.  The
accounting service closes such a call as ``timeout`` after
``CALLMESH_ACCOUNTING_MAX_CALL_DURATION`` and publishes
``accounting.cdr.timed_out``; the durable work queue ``{ns}.edge.media.expired``
bound to it is consumed by every edge with rtpengine, and whichever takes a
message deletes the call: the instance is the one its Call-ID hashes to, so
the edge needs no memory of the call.

The delete is idempotent (a call rtpengine does not hold, never relayed or
already deleted by its BYE, is fine).  A message that is not such an event
is dead-lettered with the reason; with no rtpengine instance up the message
waits on the queue (put back after ``retry_delay``) so no session leaks.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from services.edge import metrics
from shared.bus import DeadLetter, Envelope, Requeue, WorkMessage
from shared.contracts.accounting import CdrTimedOut
from shared.rtpengine.client import RtpengineClient, RtpengineUnavailableError
from shared.rtpengine.protocol import NgCommandError

log = logging.getLogger("callmesh.edge")


class MediaExpiry:
    """The work handler of ``{ns}.edge.media.expired``."""

    def __init__(self, client: RtpengineClient, retry_delay: float = 1.0) -> None:
        self.client = client
        self.retry_delay = retry_delay

    async def __call__(self, message: WorkMessage) -> None:
        call_id = expired_call(message.body)
        try:
            await self.client.command("delete", call_id, {})
        except RtpengineUnavailableError as error:
            # Waiting here, not at once, keeps a consumer from spinning on the message.
            log.warning("rtpengine delete of timed-out %s must wait: %s", call_id, error)
            metrics.MEDIA_FAILURES["delete", "requeued"] += 1
            await asyncio.sleep(self.retry_delay)
            raise Requeue from error
        except NgCommandError as error:
            # Refused for good (retrying would be refused again): rtpengine's timeout ends it.
            log.warning("rtpengine refused the delete of timed-out %s: %s", call_id, error)
            metrics.MEDIA_FAILURES["delete", "ignored"] += 1
            return
        metrics.MEDIA_EXPIRED.value += 1


def expired_call(body: bytes) -> str:
    """The Call-ID of an ``accounting.cdr.timed_out`` envelope; DeadLetter saying why not."""
    try:
        envelope = Envelope.from_bytes(body)
    except ValidationError as error:
        raise DeadLetter(f"not an event envelope: {_first(error)}") from None
    if envelope.type != CdrTimedOut.routing_key:
        raise DeadLetter(f"not {CdrTimedOut.routing_key}: {envelope.type!r}")
    try:
        event = envelope.payload(CdrTimedOut)
    except ValidationError as error:
        raise DeadLetter(f"bad {CdrTimedOut.routing_key}: {_first(error)}") from None
    return event.record.call_id


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
