"""Which BYEs a hang-up sends, from the accounting service's attempts of the Call-ID (sans-IO).

``GET /v1/dialogs/{call_id}`` gives each attempt's record and, once answered,
its legs.  A hang-up ends every attempt still open and answered (a fork
answered twice is two dialogs): one BYE to its caller, one to its callee.
Nothing to end is a conflict the API reports (409), saying why: the call
ended already, it is not answered yet (the caller's CANCEL ends that), or the
edge that answered it did not record its legs (an edge older than them).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.edge.control.byes import BadLegError, Bye, Side, bye
from services.edge.proxy.interfaces import Interfaces
from shared.contracts.calls import DialogLeg


class NotLiveError(Exception):
    """Nothing of the call can be hung up; the message says why."""


def hangup_byes(items: list[dict[str, Any]], interfaces: Interfaces) -> list[Bye]:
    """The BYEs ending every open, answered attempt of `items`; `NotLiveError` if none."""
    open_items = [item for item in items if item.get("state") == "open"]
    if not open_items:
        raise NotLiveError("the call has ended already")
    answered = [item for item in open_items if item.get("answer_at") is not None]
    if not answered:
        raise NotLiveError("the call is not answered yet (the caller's CANCEL ends it)")
    dialogs = [item["dialog"] for item in answered if item.get("dialog")]
    if not dialogs:
        raise NotLiveError("the edge that answered the call did not record its legs")
    if any(dialog.get("b2bua_leg_call_id") for dialog in dialogs):
        raise NotLiveError("a B2BUA call: only the edge's engine holding it can end it")
    byes = []
    for dialog in dialogs:
        try:
            cseq = int(dialog["cseq"])
            sides: list[tuple[Side, DialogLeg]] = [
                ("caller", DialogLeg.model_validate(dialog["caller"])),
                ("callee", DialogLeg.model_validate(dialog["callee"])),
            ]
        except (KeyError, TypeError, ValueError, ValidationError):
            raise NotLiveError("the call's recorded legs are incomplete") from None
        for side, leg in sides:
            try:
                byes.append(bye(side, leg, cseq, interfaces))
            except BadLegError as error:
                raise NotLiveError(f"the {side}'s recorded leg is unusable: {error}") from None
    return byes
