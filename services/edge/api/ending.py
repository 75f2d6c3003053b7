"""Ending a live call from its records: one path for the API's hang-up and a fraud block's.

Given the accounting service's attempts of a Call-ID (``/v1/dialogs``): the hang-up is
passed on to the edge that answered the call when that is another one and it answers (a
caller behind NAT lets in only what comes from it); a B2BUA call is ended by the engine
holding its pair (its legs' own CSeqs); a proxied call gets a BYE to each party built
from the records (`control.plan`), sent from this edge (`runtime.hangups`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from services.edge.control.plan import NotLiveError, hangup_byes
from services.edge.proxy.interfaces import Interfaces
from services.edge.runtime.hangups import Hangups
from services.edge.runtime.pool import edge_of
from services.edge.runtime.siblings import SiblingAnswer
from services.edge.runtime.worker_control import WorkerControlError

HangupForward = Callable[[str, str], Awaitable[SiblingAnswer | None]]
"""Ask the edge named first to hang up the call named second itself (None: no answer)."""
B2buaHangup = Callable[[str, str], Awaitable[bool]]
"""End the B2BUA call (its Call-ID, the edge's tag on the caller's leg) from the engine of
this edge's worker holding its dialogs: False: no worker here holds it, nor Redis;
`WorkerControlError` when that worker cannot be asked or does not answer."""
Scope = Literal["cluster", "edge"]


class HangupRefusedError(Exception):
    """Nothing was ended: the HTTP status that says why (409, 503, another edge's), and why."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass
class CallEnder:
    """This edge's ways to end a call: `hangups` its sender and interfaces once its sockets
    are open; `instance` its name; `forward` to the answering edge (None: never passed on);
    `b2bua` its engine (None: it cannot end a B2BUA call)."""

    hangups: Callable[[], tuple[Hangups, Interfaces] | None]
    instance: str = ""
    forward: HangupForward | None = None
    b2bua: B2buaHangup | None = None

    async def end(self, call_id: str, items: list[dict[str, Any]], scope: Scope) -> dict[str, Any]:
        """End the open, answered attempts among `items`; what was sent, by which edge."""
        answering = answering_edges(items)
        forward = self.forward
        if scope == "cluster" and forward and answering and self.instance not in answering:
            passed = await forward(answering[0], call_id)
            if passed is not None:
                if passed.status != 200:
                    raise HangupRefusedError(passed.status, passed.body.get("detail"))
                return {**passed.body, "edge": answering[0]}
        tags = b2bua_tags(items)
        if tags:
            return await self._end_b2bua(call_id, tags)
        sender = self.hangups()
        if sender is None:
            raise HangupRefusedError(503, "the edge is not serving")
        runner, interfaces = sender
        try:
            byes = hangup_byes(items, interfaces)
        except NotLiveError as error:
            raise HangupRefusedError(409, str(error)) from None
        outcomes = await runner.end(call_id, byes)
        return {
            "call_id": call_id,
            "edge": self.instance,
            "byes": [{"to": o.side, "status": o.status, "reason": o.reason} for o in outcomes],
        }

    async def _end_b2bua(self, call_id: str, tags: list[str]) -> dict[str, Any]:
        """BYEs on both legs from the engine holding the pair (correct CSeqs, no guessing);
        their answers are the engine's, so the outcome is only that they were sent."""
        b2bua, ended = self.b2bua, []
        for tag in tags:
            try:
                if b2bua is not None and await b2bua(call_id, tag):
                    ended.append(tag)
            except WorkerControlError as error:
                raise HangupRefusedError(error.status, error.detail) from None
        if not ended:
            detail = "the B2BUA call is held by no worker of this edge, nor in Redis"
            raise HangupRefusedError(409, detail)
        sent = {"status": None, "reason": "sent by the B2BUA"}
        byes = [{"to": side, **sent} for _ in ended for side in ("caller", "callee")]
        return {"call_id": call_id, "edge": self.instance, "mode": "b2bua", "byes": byes}


def b2bua_tags(items: list[dict[str, Any]]) -> list[str]:
    """The edge's tags on the caller's leg of the call's open, answered B2BUA attempts."""
    return [
        str(item["dialog"].get("to_tag"))
        for item in items
        if item.get("state") == "open"
        and isinstance(item.get("dialog"), dict)
        and item["dialog"].get("b2bua_leg_call_id")
    ]


def answering_edges(items: list[dict[str, Any]]) -> list[str]:
    """The edges that answered the call's open attempts (a worker's name read as its edge's:
    only the edge is announced to the others)."""
    edges = {
        item["dialog"].get("edge")
        for item in items
        if item.get("state") == "open" and isinstance(item.get("dialog"), dict)
    }
    return sorted({edge_of(edge) for edge in edges if isinstance(edge, str) and edge})
