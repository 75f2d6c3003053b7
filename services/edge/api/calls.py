"""``/v1/calls/{call_id}/trace``: the SIP messages the edges still keep of a call.

The messages come from each edge worker's trace ring (`runtime.trace_ring`,
``CALLMESH_TRACE_RING`` messages per worker) and, unless ``scope=edge``, from
every other edge of the cluster (`runtime.siblings`), merged in time order, each
naming the edge that saw it: a quick look at a call's ladder, both legs of a
topology-hidden call included (named by either Call-ID).  An edge that did not
answer in time is listed in ``unanswered`` and the trace is ``partial``.  Once
the rings have moved past a call it is 404: Homer, fed over HEP, is the archive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response


@dataclass(frozen=True, slots=True)
class Gathered:
    """A call's kept messages (`TraceEntry.as_json` each, with its ``edge``), and the edges
    asked that gave no answer (their part may be missing)."""

    messages: list[dict[str, Any]]
    unanswered: list[str] = field(default_factory=list)


TraceSource = Callable[[str, bool], Awaitable[Gathered]]
"""The call's messages from every worker of this edge, and of every other edge when the
second argument is true."""

CallId = Annotated[str, Path(min_length=1, max_length=512, pattern=r"^[^\x00-\x20\x7f]+$")]
"""No space or control character (none is in a SIP Call-ID): a line break would cut the name
the workers are asked for (one line each) short, and they would answer for another call."""


def calls_router(trace: TraceSource) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["calls"])

    @router.get(
        "/{call_id}/trace",
        summary="A call's SIP messages still kept by the edges, as JSON or a text ladder",
        response_model=None,
        responses={404: {"description": "No message of the call kept (never seen, or aged out)"}},
    )
    async def call_trace(
        call_id: CallId,
        format: Annotated[Literal["json", "text"], Query()] = "json",
        scope: Annotated[
            Literal["cluster", "edge"],
            Query(description="`edge`: this edge's messages only, without asking the others"),
        ] = "cluster",
    ) -> Response:
        gathered = await trace(call_id, scope == "cluster")
        messages = sorted(gathered.messages, key=lambda entry: float(entry["time"]))
        missing = gathered.unanswered
        if not messages:
            unanswered = f"; no answer from {', '.join(missing)}" if missing else ""
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no message of call {call_id!r} kept (never seen, or aged out){unanswered}",
            )
        if format == "text":
            partial = f"partial: no answer from {', '.join(missing)}\n" if missing else ""
            return PlainTextResponse(partial + ladder(messages))
        edges = sorted({str(m.get("edge", "")) for m in messages})
        return JSONResponse(
            {
                "call_id": call_id,
                "messages": messages,
                "edges": edges,
                "partial": bool(missing),
                "unanswered": missing,
            }
        )

    return router


def ladder(messages: list[dict[str, Any]]) -> str:
    """One line per message, ``time  [edge]  source -> destination  transport  first line``
    (the edge when several saw the call), then every message in full."""
    width = max(len(str(m["source"])) for m in messages)
    several = len({m.get("edge") for m in messages}) > 1
    lines = []
    for m in messages:
        first = str(m["message"]).split("\r\n", 1)[0].split("\n", 1)[0]
        edge = f"{m.get('edge', '')}  " if several else ""
        lines.append(
            f"{_clock(m['time'])}  {edge}{m['source']:>{width}} -> {m['destination']}  "
            f"{m['transport']:<4} {first}  [{m['call_id']}]"
        )
    full = [f"\n--- {_clock(m['time'])} {m['source']} -> {m['destination']}\n{m['message']}"
            for m in messages]  # fmt: skip # one comprehension, as the ladder reads
    return "\n".join(lines) + "\n" + "".join(full)


def _clock(seconds: Any) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).strftime("%H:%M:%S.%f")
