"""Hanging up the live calls of an account a fraud rule has just blocked (opt-in).

Why: a block refuses the account's new calls at once, but its calls already up go on
costing until they end — for a stolen account calling premium numbers, hours.  With the
option on (``CALLMESH_FRAUD_HANGUP``), every edge consumes the work queue
``{ns}.edge.fraud.hangups``, bound to the ``fraud.threshold.…`` events, so each block
reaches one edge (any: the BYEs are built from the records, `control.plan`).  That edge
lists the account's open calls from the accounting service (`control.fraud_calls` picks
the block's), and hangs up each answered one as ``POST /v1/calls/{id}:hangup`` does: the
records end with ``hangup_side: edge``.  A call still ringing cannot be ended by a BYE,
so the edge looks again `FOLLOW_UPS` times, `FOLLOW_UP_INTERVAL` apart, while any is left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from pydantic import ValidationError

from services.edge.api.accounting import (
    Accounting,
    AccountingRefusedError,
    AccountingUnavailableError,
)
from services.edge.api.ending import CallEnder, HangupRefusedError
from services.edge.control.fraud_calls import BlockedCalls
from shared.bus import DeadLetter, Envelope, Requeue, WorkMessage
from shared.contracts.fraud import FraudThreshold

log = logging.getLogger("callmesh.edge.fraud")

FOLLOW_UPS: Final = 3
FOLLOW_UP_INTERVAL: Final = 20.0
"""Seconds between two looks for the calls that were still ringing."""
PAGE: Final = 200
MAX_PAGES: Final = 50
"""Open calls looked at per block at most (`PAGE` each): 10,000."""
AT_ONCE: Final = 20
"""Calls hung up at the same time (each waits for its BYEs' answers)."""
RETRY_DELAY: Final = 2.0
"""Seconds before a block the accounting service could not answer for is taken again."""


class FraudHangups:
    """The work handler of ``{ns}.edge.fraud.hangups``."""

    def __init__(
        self,
        accounting: Accounting,
        ender: CallEnder,
        *,
        follow_ups: int = FOLLOW_UPS,
        follow_up_interval: float = FOLLOW_UP_INTERVAL,
    ) -> None:
        self._accounting = accounting
        self._ender = ender
        self._follow_ups = follow_ups
        self._interval = follow_up_interval
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, message: WorkMessage) -> None:
        try:
            event = Envelope.from_bytes(message.body).payload(FraudThreshold)
        except ValidationError as error:
            detail = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in detail["loc"]) or "body"
            raise DeadLetter(f"not a fraud threshold event: {where}: {detail['msg']}") from None
        blocked = BlockedCalls.of(event)
        if blocked is None:
            return  # a warning, or a level that sets no block
        if blocked.query() is None:
            log.warning("fraud block %s: no record names account %r", event.block, blocked.account)
            return
        try:
            ended, ringing = await self._sweep(blocked)
        except AccountingRefusedError as error:
            raise DeadLetter(f"the accounting service refused: {error}") from None
        except AccountingUnavailableError as error:
            log.warning("fraud block %s: live calls not listed yet: %s", event.block, error)
            await asyncio.sleep(RETRY_DELAY)  # no spinning on the message
            raise Requeue from None
        log.info(
            "fraud block %s of %s%s: %d live calls hung up, %d not answered yet",
            event.block,
            blocked.account,
            f" to {blocked.prefix}" if blocked.prefix is not None else "",
            ended,
            ringing,
        )
        if ringing and self._follow_ups:
            task = asyncio.create_task(self._follow_up(str(event.block), blocked))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow_up(self, block: str, blocked: BlockedCalls) -> None:
        """Look again for the block's calls answered since (a few times, while any ring)."""
        for _ in range(self._follow_ups):
            await asyncio.sleep(self._interval)
            try:
                ended, ringing = await self._sweep(blocked)
            except (AccountingRefusedError, AccountingUnavailableError) as error:
                log.warning("fraud block %s: live calls not listed again: %s", block, error)
                continue
            if ended:
                log.info("fraud block %s: %d more live calls hung up", block, ended)
            if not ringing:
                return

    async def _sweep(self, blocked: BlockedCalls) -> tuple[int, int]:
        """Hang up the block's answered open calls: (how many, how many still ringing)."""
        if self._ender.hangups() is None:
            raise AccountingUnavailableError("this edge is not serving yet")
        answered, ringing = await self._open_calls(blocked)
        ended = 0
        for start in range(0, len(answered), AT_ONCE):
            chunk = answered[start : start + AT_ONCE]
            ending = (self._end(blocked, call_id) for call_id in chunk)
            outcomes = await asyncio.gather(*ending)
            ended += sum(outcomes)
        return ended, ringing

    async def _open_calls(self, blocked: BlockedCalls) -> tuple[list[str], int]:
        """The Call-IDs of the block's answered open calls, and how many of its calls ring."""
        query = blocked.query()
        assert query is not None
        params = dict(query, limit=str(PAGE))
        answered: dict[str, None] = {}  # ordered, each Call-ID once (a fork is one hang-up)
        ringing = 0
        for _ in range(MAX_PAGES):
            listing = await self._accounting.open_calls(params)
            for call in listing.items:
                if not blocked.holds(call):
                    continue
                if call.get("answer_at") is None:
                    ringing += 1
                elif isinstance(call.get("call_id"), str):
                    answered[call["call_id"]] = None
            if listing.next_cursor is None:
                break
            params["cursor"] = listing.next_cursor
        return list(answered), ringing

    async def _end(self, blocked: BlockedCalls, call_id: str) -> bool:
        """End the block's attempts of one call as the API does (passed on to the edge that
        answered it, a B2BUA call by its engine); another caller's attempt under the same
        Call-ID is left alone, unless the hang-up is passed on (that edge ends the Call-ID's
        every attempt).  False when nothing was ended."""
        found = await self._accounting.dialogs(call_id)
        items = [item for item in found or () if blocked.holds(item)]
        if not items:
            return False
        try:
            await self._ender.end(call_id, items, "cluster")
        except HangupRefusedError:
            return False
        return True
