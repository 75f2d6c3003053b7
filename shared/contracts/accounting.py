"""The accounting service's call record and its ``accounting.cdr.completed`` event.

A :class:`CallRecord` is one call attempt (Call-ID and the caller's From tag)
folded from the edges' ``edge.call.…`` events.  It is what ``GET /v1/cdrs``
returns and what ``accounting.cdr.completed`` carries to billing.  Times are
Unix seconds with millisecond precision, durations milliseconds.

The event is published after the record's change is committed, so it is
at-least-once: a crash between commit and publish, or a redelivered edge
event, sends it again.  ``version`` grows by one with every change of the
stored record; billing keeps the highest version per ``(call_id, from_tag)``
and drops the rest.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.calls import TargetKind
from shared.contracts.event import Event

Disposition = Literal[
    "answered", "busy", "no_answer", "failed", "cancelled", "unrouted", "rejected", "timeout"
]
"""How the attempt ended; docs/accounting.md says how each is decided from the events."""

HangupSide = Literal["caller", "callee", "edge"]

VISUAL_SEPARATORS: Final = str.maketrans("", "", " -.()")


def normalise_party(address: str) -> str:
    """The user part of a SIP/tel address without scheme, host or visual separators: a
    record's ``caller_normalised``, what ``?caller=`` of ``/v1/cdrs`` matches."""
    text = address.strip().strip("<>")
    for scheme in ("sips:", "sip:", "tel:"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    user = text.split("@", 1)[0].split(";", 1)[0]
    return user.translate(VISUAL_SEPARATORS)


RecordState = Literal["open", "complete"]
"""``open``: the call may still change (no final answer yet, or answered without a BYE);
``complete``: it ended (BYE, final failure, CANCEL) or was closed by the timeout."""


class BranchAttempt(BaseModel):
    """One branch of the INVITE and its final answer."""

    model_config = ConfigDict(frozen=True)

    target: str
    target_kind: TargetKind
    address: str
    carrier: str | None = None
    sent_at: float
    answered_at: float
    status: int
    reason: str = ""


class TransferAttempt(BaseModel):
    """One transfer of a B2BUA call (``edge.call.transferred``): when it ended, its target,
    whether it was done, the status that decided, and the new leg's Call-ID."""

    model_config = ConfigDict(frozen=True)

    at: float
    target: str
    ok: bool
    status: int
    reason: str = ""
    failed_at: Literal["target", "caller", "call"] | None = None
    leg_call_id: str


class CallRecord(BaseModel):
    """One call attempt as billing sees it."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    from_tag: str
    state: RecordState
    disposition: Disposition | None
    """``None`` while the call is open and nothing final is known."""
    setup_at: float
    ring_at: float | None = None
    answer_at: float | None = None
    end_at: float | None = None
    post_dial_delay_ms: int | None = None
    duration_ms: int = 0
    billable_seconds: int = 0
    final_status: int | None = None
    final_reason: str = ""
    hangup_side: HangupSide | None = None
    caller: str | None = None
    caller_normalised: str | None = None
    callee_dialled: str | None = None
    callee: str | None = None
    source: str | None = None
    transport: str | None = None
    subscriber: str | None = None
    peer: str | None = None
    """The peer the call came from (its id), if it came from one."""
    group: str | None = None
    rule: str | None = None
    carrier: str | None = None
    gateway: str | None = None
    """The answering branch's target (a gateway id, contact, ``set:uri`` or URI)."""
    attempts: tuple[BranchAttempt, ...] = ()
    edges: tuple[str, ...] = ()
    last_seen_at: float
    """The last sign of life: the latest event of the call."""
    mode: Literal["b2bua"] | None = None
    """``b2bua`` for a call the edge's B2BUA carried (its ``call_id`` and ``from_tag`` are the
    caller's leg's), ``None`` for a proxied one."""
    b2bua_leg_call_id: str | None = None
    """A B2BUA call's other leg: the Call-ID of the edge's dialog with the answering target."""
    transfers: tuple[TransferAttempt, ...] = ()
    """A B2BUA call's transfers (``POST /v1/calls/{id}:transfer``), done or failed, in order."""


class CdrCompleted(Event):
    """A record became complete, or changed after it was (a late BYE after a timeout close)."""

    routing_key: ClassVar[str] = "accounting.cdr.completed"

    version: int
    record: CallRecord


class CdrTimedOut(CdrCompleted):
    """The same completion again, for a record completed by the timeout close (``timeout``).

    Published beside its ``accounting.cdr.completed`` (same body, same
    at-least-once rule) so that a consumer interested only in calls whose end
    was never seen, such as the edges' media relay (``edge.media.expired``),
    binds to this key alone instead of taking every completion.
    """

    routing_key: ClassVar[str] = "accounting.cdr.timed_out"


MAX_BATCH_COMPLETIONS: Final = 1000
"""Completions one :class:`CdrCompletedBatch` may carry."""


class CdrCompletedBatch(Event):
    """Several ``accounting.cdr.completed`` in one message (``accounting.cdr.completed.batch``).

    Why: publishing a message costs the accounting service more than folding
    the call it announces, so with ``CALLMESH_ACCOUNTING_COMPLETED_BATCH`` above
    1 the records one commit completed go out as batches of up to that many.
    Opt-in: a subscriber must read this form too (binding
    ``accounting.cdr.completed.#`` takes both).  One completion alone always
    goes as a plain ``accounting.cdr.completed``; ``accounting.cdr.timed_out``
    is never batched.  Each item is exactly the single event's data.
    """

    routing_key: ClassVar[str] = "accounting.cdr.completed.batch"

    completed: list[CdrCompleted] = Field(max_length=MAX_BATCH_COMPLETIONS)


CALLS_QUEUE = "accounting.calls"
"""The durable work queue ``{ns}.accounting.calls`` the accounting instances share."""
CALL_EVENTS = "edge.call.#"
"""What the queue is bound to: every call event of every edge."""
