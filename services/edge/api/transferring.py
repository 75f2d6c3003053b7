"""``POST /v1/calls/{id}:transfer``: a B2BUA call's far end moved to another target.

Given the accounting service's attempts of a Call-ID (``/v1/dialogs``), as a hang-up is
(`api.ending`): the request is passed on to the edge that answered the call when that is
another one and it answers; there (or here) the engine holding the pair begins the
transfer (`B2buaRunner.transfer`: RFC 3725's re-INVITE flow, docs/b2bua.md).  The answer
(202) says it began; its outcome is the event ``edge.call.transferred``.  A proxied call
cannot be transferred (409): the proxy keeps no dialog state to re-INVITE the caller with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from services.edge.api.ending import HangupRefusedError, Scope, answering_edges, b2bua_tags
from services.edge.runtime.siblings import SiblingAnswer
from services.edge.runtime.transfer_targets import TransferTargetError
from services.edge.runtime.worker_control import WorkerControlError

B2buaTransfer = Callable[[str, str, str], Awaitable[tuple[str, str]]]
"""Begin the transfer of the B2BUA call (its Call-ID, the edge's tag on the caller's leg) to
the target named third, from the engine of this edge's worker holding it: ("", the new
leg's Call-ID) or why not (`TransferTargetError`, `WorkerControlError`: raised)."""
TransferForward = Callable[[str, str, str], Awaitable[SiblingAnswer | None]]
"""Ask the edge named first to transfer the call named second itself (None: no answer)."""

REFUSALS: Final[dict[str, tuple[int, str]]] = {
    "elsewhere": (409, "the B2BUA call is held by no worker of this edge, nor in Redis"),
    "unknown": (409, "the call has ended already"),
    "unanswered": (409, "the call is not answered yet"),
    "transferring": (409, "a transfer of this call is in flight already"),
    "target": (422, "`to` is too long to keep in the call's state"),
}


class TransferBody(BaseModel):
    """``to``: a SIP URI (``sip:agent7@192.0.2.7:5070``) or a number routed as a new call's."""

    model_config = ConfigDict(extra="forbid")

    to: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            pattern=r"^(sips?:[^\x00-\x20\x7f\"<>]+|\+?[0-9]{1,32})$",
            description="a `sip:`/`sips:` URI, or a number (digits, an optional leading +)",
        ),
    ]


@dataclass
class CallTransferrer:
    """This edge's way to transfer a call: `instance` its name, `b2bua` its engine (None: it
    has none), `forward` to the answering edge (None: never passed on)."""

    instance: str = ""
    b2bua: B2buaTransfer | None = None
    forward: TransferForward | None = None

    async def transfer(
        self, call_id: str, items: list[dict[str, Any]], to: str, scope: Scope
    ) -> dict[str, Any]:
        """Begin the transfer of the call's open, answered B2BUA attempt to `to`; raises
        `HangupRefusedError` with the status saying why not (409, 404, 422, 503, ...)."""
        live = [item for item in items if item.get("state") == "open"]
        if not live:
            raise HangupRefusedError(409, "the call has ended already")
        if all(item.get("answer_at") is None for item in live):
            raise HangupRefusedError(409, "the call is not answered yet")
        tags = b2bua_tags(items)
        if not tags:
            detail = (
                "a proxied call cannot be transferred: the proxy keeps no dialog state to "
                "re-INVITE the caller with; route such calls with `mode: b2bua`"
            )
            raise HangupRefusedError(409, detail)
        answering, forward = answering_edges(items), self.forward
        if scope == "cluster" and forward and answering and self.instance not in answering:
            passed = await forward(answering[0], call_id, to)
            if passed is not None:
                if passed.status != 202:
                    raise HangupRefusedError(passed.status, passed.body.get("detail"))
                return {**passed.body, "edge": answering[0]}
        why = "elsewhere"
        for tag in tags:
            if self.b2bua is None:
                break
            try:
                why, leg = await self.b2bua(call_id, tag, to)
            except (TransferTargetError, WorkerControlError) as error:
                raise HangupRefusedError(error.status, error.detail) from None
            if not why:
                return {
                    "call_id": call_id,
                    "edge": self.instance,
                    "mode": "b2bua",
                    "to": to,
                    "state": "transferring",
                    "leg_call_id": leg,
                }
        status, detail = REFUSALS.get(why, REFUSALS["elsewhere"])
        raise HangupRefusedError(status, detail)
