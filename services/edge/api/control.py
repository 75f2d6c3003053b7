"""``GET /v1/calls`` (live calls), ``POST /v1/calls/{call_id}:hangup`` and ``:transfer``.

The live calls are the accounting service's open records (asked over HTTP:
`api.accounting`), filtered and paged as ``/v1/cdrs`` is.  A hang-up asks
it for the call's attempts and legs, sends a BYE to each party of every open,
answered attempt through this edge's sockets (`runtime.hangups`), and answers
with each BYE's outcome once all are known; the records then end with
``hangup_side: edge``.  What a BYE built from records can and cannot reach is
in docs/edge.md ("Hanging up a proxied call").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.edge.api.accounting import (
    Accounting,
    AccountingRefusedError,
    AccountingUnavailableError,
)
from services.edge.api.ending import CallEnder, HangupRefusedError
from services.edge.api.transferring import CallTransferrer, TransferBody

MAX_FILTER_CHARS = 256
Text = Annotated[str | None, Query(min_length=1, max_length=MAX_FILTER_CHARS)]
CallId = Annotated[str, Path(min_length=1, max_length=512, pattern=r"^[^\x00-\x20\x7f]+$")]
"""A SIP Call-ID: no space or control character (a line break would split the BYE's lines)."""


def control_router(
    accounting: Accounting | None,
    ender: CallEnder,
    transferrer: CallTransferrer | None = None,
) -> APIRouter:
    """`accounting` None: ``CALLMESH_EDGE_ACCOUNTING_URL`` unset (503); `ender`: how this
    edge ends a call (`api.ending`); `transferrer`: how it transfers one (`api.transferring`;
    None: as one without a B2BUA)."""
    transfers = transferrer or CallTransferrer(ender.instance)
    router = APIRouter(prefix="/calls", tags=["calls"])

    def asking() -> Accounting:
        if accounting is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "call control is off: set CALLMESH_EDGE_ACCOUNTING_URL",
            )
        return accounting

    @router.get("", summary="Live calls: the accounting service's open ones, newest first")
    async def live_calls(
        *,
        subscriber: Text = None,
        peer: Text = None,
        gateway: Text = None,
        caller: Text = None,
        callee: Text = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
    ) -> dict[str, Any]:
        given = {
            "subscriber": subscriber,
            "peer": peer,
            "gateway": gateway,
            "caller": caller,
            "callee": callee,
        }
        """The calls still open in the accounting service's records (``GET /v1/open-calls``,
        asked at ``CALLMESH_EDGE_ACCOUNTING_URL``), newest first; a call answered and not yet
        ended has its ``answer_at`` and no ``end_at``.  Pass ``next_cursor`` back as ``cursor``
        for the next page.  503 when call control is off, 502 when the accounting service
        gives no answer."""
        params = {name: value for name, value in given.items() if value is not None}
        params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        with _answers():
            listing = await asking().open_calls(params)
        return {"items": listing.items, "next_cursor": listing.next_cursor}

    @router.post(
        "/{call_id:path}:hangup",
        summary="End a call: a BYE to each party (a proxied call's built from its records)",
        responses={
            404: {"description": "No record of the call"},
            409: {"description": "Nothing to hang up: ended, not answered, or no legs recorded"},
            503: {
                "description": "Call control is off, or the worker holding the call is not "
                "listening"
            },
            504: {"description": "The worker of this edge holding the call did not answer"},
        },
    )
    async def hangup(
        call_id: CallId,
        scope: Annotated[
            Literal["cluster", "edge"],
            Query(description="`edge`: send the BYEs from this edge, never pass the hang-up on"),
        ] = "cluster",
    ) -> dict[str, Any]:
        """For a proxied call (the edge keeps no dialog state): every open, answered attempt of
        the Call-ID gets a BYE to its caller and one to its callee, built from the legs its
        ``edge.call.answered`` recorded, sent from this edge (UDP retransmitted, a caller on a
        stream only over its open connection).  Answers once every BYE is answered or given
        up: ``byes`` lists each one's ``to`` (``caller``, ``callee``), ``status`` (408: no
        answer; 503: not sent) and ``reason``.  The call's record then ends with
        ``hangup_side: edge``.  404: no record of the call; 409: it ended already, is not
        answered yet, or was answered by an edge that did not record its legs.  What a BYE
        built without dialog state cannot reach: docs/edge.md, "Hanging up a proxied call".
        The BYEs leave from the edge that answered the call when it is another one and is
        up (the hang-up is passed on to it; a caller behind NAT lets in only what comes from
        it), else from this one; ``edge`` names the edge that sent them.  A B2BUA call
        (``mode: b2bua``) is ended by the engine holding its pair, on that edge (or adopted
        from Redis when no edge answers for it): a BYE on each leg with that leg's own
        Call-ID, tags and next CSeq; the answer has ``mode: b2bua`` and comes once they are
        sent (their ``status`` is ``null``), by whichever worker of the edge holds the pair
        (asked by this one; 503 if it is not listening, 504 if it does not answer within
        5 s); 409 when the pair is nowhere.
        """
        with _answers():
            items = await asking().dialogs(call_id)
        if items is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no record of this Call-ID")
        try:
            return await ender.end(call_id, items, scope)
        except HangupRefusedError as error:
            raise HTTPException(error.status, error.detail) from None

    @router.post(
        "/{call_id:path}:transfer",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Move a B2BUA call's far end to another target (re-INVITE, RFC 3725)",
        responses={
            404: {"description": "No record of the call, or no route for the number"},
            409: {"description": "Not a live, answered B2BUA call held by an edge, or one in "
                  "transfer already"},
            422: {"description": "`to` is neither a usable SIP URI nor a number"},
            503: {"description": "Call control is off, the route's gateway is unusable now, "
                  "or the worker holding the call is not listening"},
            504: {"description": "The worker of this edge holding the call did not answer"},
        },
    )  # fmt: skip # the responses on two lines each
    async def transfer(
        call_id: CallId,
        body: TransferBody,
        scope: Annotated[
            Literal["cluster", "edge"],
            Query(description="`edge`: transfer from this edge, never pass the request on"),
        ] = "cluster",
    ) -> dict[str, Any]:
        """For an answered B2BUA call (``mode: b2bua``): the caller's leg is kept and a new leg
        goes to ``to`` (a ``sip:`` URI as given, or a number routed like a new call's
        Request-URI: the caller's profile and dialplan, the rule's first usable gateway).
        The edge sends it an INVITE without SDP, re-INVITEs the caller with the target's
        offer, ACKs the target with the caller's answer and sends the old far end a BYE
        (docs/b2bua.md, "Transferring a B2BUA call").  Answers 202 once the new leg's
        INVITE is sent (``leg_call_id``: its Call-ID); the outcome comes as the event
        ``edge.call.transferred``: done, or failed with the call left as it was (the target
        refusing or not answering, the caller refusing the re-INVITE).  Passed on to the
        edge that answered the call, as a hang-up is.  404: no record of the call (or no
        route for the number); 409: a proxied call, one ended or not answered yet, one in
        transfer already, or one no edge holds; 422: a ``to`` that is not usable; 503/504:
        the worker of this edge holding the call is not listening / did not answer."""
        with _answers():
            items = await asking().dialogs(call_id)
        if items is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no record of this Call-ID")
        try:
            return await transfers.transfer(call_id, items, body.to, scope)
        except HangupRefusedError as error:
            raise HTTPException(error.status, error.detail) from None

    return router


@contextmanager
def _answers() -> Iterator[None]:
    """The accounting service's refusal passed on; no usable answer from it is a 502."""
    try:
        yield
    except AccountingRefusedError as error:
        raise HTTPException(error.status, error.detail) from None
    except AccountingUnavailableError as error:
        detail = f"the accounting service: {error}"
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail) from None
