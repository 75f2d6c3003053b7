"""The ``routing.commands`` queue: route updates sent straight over RabbitMQ.

A message is acknowledged only once stored (the handler returns after the store
call). Anything that cannot be applied is dead-lettered with the reason, and the
sender gets ``{"ok": false, "error": …}`` when it asked for a reply. A message
with an AMQP ``message_id`` is applied once however often it arrives (a
redelivery after a node is lost, a resend of an unconfirmed publish).
"""

from __future__ import annotations

import orjson

from services.routing.writer import TableWriter
from shared.bus import DeadLetter, WorkMessage
from shared.routing_table.changes import InvalidChangeError, parse_commands


class CommandHandler:
    def __init__(self, writer: TableWriter) -> None:
        self._writer = writer

    async def __call__(self, message: WorkMessage) -> bytes | None:
        try:
            version = await self._writer.apply(
                parse_commands(message.body), command_id=message.message_id
            )
        except InvalidChangeError as error:
            reason = str(error)
            raise DeadLetter(reason, reply=orjson.dumps({"ok": False, "error": reason})) from None
        return orjson.dumps({"ok": True, "version": version})
