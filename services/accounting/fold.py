"""The call record as a pure fold of a Call-ID's events: no I/O, no clock, no order.

Why a fold rather than a state machine updated per event: events come twice,
late, out of order and from several edges, and several accounting instances
consume one queue.  Recomputing the record from the set of every stored event
of the Call-ID makes duplicates and order irrelevant by construction: the input
is a set (duplicates collapse), and every choice below takes a minimum or
maximum under a total order (``at``, then the event's own text), never "the
first one seen".

One Call-ID may hold several attempts (a caller re-sending with a new From
tag); each attempt-scoped event carries the caller's From tag.  In-dialog
events (BYE, re-INVITE, UPDATE) carry the request's own tags: they belong to
the attempt whose tag is either of them, and the side whose tag is the BYE's
From tag hung up.  The timeout close is an event too (:class:`TimeoutClose`,
stored by the service), so a call closed by it and a late BYE still fold to
one answer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar, TypeVar, cast

from shared.contracts.accounting import (
    BranchAttempt,
    CallRecord,
    Disposition,
    HangupSide,
    RecordState,
    TransferAttempt,
    normalise_party,
)
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    CallStarted,
    CallTransferred,
    CallUpdated,
)

TIMEOUT_CLOSE_TYPE = "accounting.call.timed_out"


class TimeoutClose(CallEvent):
    """The accounting service closed the attempt after the longest call allowed.

    Stored with the edges' events (never published): ``at`` is when it was closed.
    """

    routing_key: ClassVar[str] = TIMEOUT_CLOSE_TYPE

    from_tag: str


AttemptEvent = (
    (CallStarted | BranchTried | CallRinging | CallAnswered | CallFailed | CallCancelled)
    | TimeoutClose
    | CallTransferred
)
DialogEvent = CallEnded | CallUpdated
ATTEMPT_EVENTS = (
    CallStarted,
    BranchTried,
    CallRinging,
    CallAnswered,
    CallFailed,
    CallCancelled,
    TimeoutClose,
    CallTransferred,
)

E = TypeVar("E", bound=CallEvent)

OK_REASON = "OK"
CANCELLED_STATUS, CANCELLED_REASON = 487, "Request Terminated"
BUSY_STATUSES = frozenset({486, 600})
NO_ANSWER_STATUSES = frozenset({408, 480})
UNROUTED_STATUSES = frozenset({404, 484})
REJECTED_STATUSES = frozenset({401, 403, 407})


def order_key(event: CallEvent) -> tuple[float, str, str]:
    """A total order: time first, then type and text, so ties never depend on arrival."""
    return (event.at, event.routing_key, event.model_dump_json())


def earliest(events: Iterable[E]) -> E | None:
    candidates = list(events)
    if len(candidates) < 2:  # the usual case: no order to compute
        return candidates[0] if candidates else None
    return min(candidates, key=order_key)


def fold_call(events: Iterable[CallEvent]) -> list[CallRecord]:
    """Every attempt of one Call-ID's events, as records ordered by From tag.

    In-dialog events whose tags match no attempt (a BYE before any other event
    of its call) are kept by the caller and wait: they yield no record yet.
    """
    unique = set(events)
    attempts: dict[str, list[AttemptEvent]] = defaultdict(list)
    dialog: list[DialogEvent] = []
    for event in unique:
        if isinstance(event, CallEnded | CallUpdated):
            dialog.append(event)
        elif isinstance(event, ATTEMPT_EVENTS):
            attempts[event.from_tag].append(event)
    records = []
    for tag in sorted(attempts):
        own = [event for event in dialog if tag in (event.from_tag, event.to_tag)]
        records.append(fold_attempt(tag, attempts[tag], own))
    return records


Grouped = dict[type[CallEvent], list[CallEvent]]
"""Events by their exact type: each kind found once per attempt instead of a scan per kind."""


def grouped(events: Iterable[CallEvent]) -> Grouped:
    by_type: Grouped = {}
    for event in events:
        by_type.setdefault(type(event), []).append(event)
    return by_type


def of_type(events: Grouped, kind: type[E]) -> list[E]:
    """The events of exactly ``kind`` (call event types are never subclassed)."""
    return cast("list[E]", events.get(kind, []))


def fold_attempt(tag: str, events: list[AttemptEvent], dialog: list[DialogEvent]) -> CallRecord:
    """One attempt's record from its own events and the in-dialog events naming its tag."""
    mine, talk = grouped(events), grouped(dialog)
    started = earliest(of_type(mine, CallStarted))
    # A challenge (401/407) before the authenticated INVITE shares the Call-ID and
    # From tag: what ended before the accepted INVITE is not this call's end.
    not_before = started.at if started is not None else -math.inf
    answered = earliest(of_type(mine, CallAnswered))
    ringing = earliest(of_type(mine, CallRinging))
    failed = earliest(e for e in of_type(mine, CallFailed) if e.at >= not_before)
    cancelled = earliest(e for e in of_type(mine, CallCancelled) if e.at >= not_before)
    closed = earliest(of_type(mine, TimeoutClose))
    ended = earliest(of_type(talk, CallEnded))
    # Another edge's report of the same BYE is no new sign of life: only the BYE
    # the record ends with counts, so a later second report changes nothing.
    updates = of_type(talk, CallUpdated)
    alive: list[CallEvent] = [e for e in events if not isinstance(e, TimeoutClose)]
    alive += updates
    if ended is not None:
        alive.append(ended)
    first_seen = min((e.at for e in alive), default=closed.at if closed else 0.0)
    last_seen = max((e.at for e in alive), default=first_seen)
    call_id = next(iter(events)).call_id

    state: RecordState = "open"
    disposition: Disposition | None = None
    end_at: float | None = None
    status: int | None = None
    reason = ""
    side: HangupSide | None = None
    if answered is not None:
        status, reason, disposition = 200, OK_REASON, "answered"
        if ended is not None:
            state, end_at = "complete", ended.at
            side = "edge" if ended.by_edge else "caller" if ended.from_tag == tag else "callee"
        elif closed is not None:
            signs = [answered.at, *(e.at for e in updates)]
            state, disposition, end_at = "complete", "timeout", max(signs)
    elif cancelled is not None:
        state, disposition, end_at, side = "complete", "cancelled", cancelled.at, "caller"
        status, reason = CANCELLED_STATUS, CANCELLED_REASON
    elif failed is not None:
        state, disposition, end_at = "complete", failure_disposition(failed), failed.at
        status, reason = failed.status, failed.reason
        side = "edge" if failed.origin == "edge" else "callee"
    elif closed is not None:
        state, disposition, end_at = "complete", "timeout", last_seen
    if started is None and closed is None:
        # Every attempt an edge reports begins with its CallStarted: without it (still
        # on its way, say redelivered after an instance died) the caller, callee and
        # rule are unknown, so the record may still change and is not billable yet.
        state = "open"

    setup_at = started.at if started is not None else first_seen
    duration_ms = 0
    if answered is not None and end_at is not None:
        duration_ms = max(0, round((end_at - answered.at) * 1000))
    first_answer = ringing.at if ringing is not None else answered.at if answered else None
    delay = None
    if started is not None and first_answer is not None:
        delay = max(0, round((first_answer - started.at) * 1000))
    branches = sorted(
        {
            BranchAttempt(
                target=b.target,
                target_kind=b.target_kind,
                address=b.address,
                carrier=b.carrier,
                sent_at=ms(b.sent_at),
                answered_at=ms(b.at),
                status=b.status,
                reason=b.reason,
            )
            for b in of_type(mine, BranchTried)
        },
        key=lambda b: (b.sent_at, b.answered_at, b.target, b.status, b.address),
    )
    return CallRecord(
        call_id=call_id,
        from_tag=tag,
        state=state,
        disposition=disposition,
        setup_at=ms(setup_at),
        ring_at=ms_or_none(ringing.at if ringing else None),
        answer_at=ms_or_none(answered.at if answered else None),
        end_at=ms_or_none(end_at),
        post_dial_delay_ms=delay,
        duration_ms=duration_ms,
        billable_seconds=math.ceil(duration_ms / 1000),
        final_status=status,
        final_reason=reason,
        hangup_side=side,
        caller=started.caller if started else None,
        caller_normalised=normalise_party(started.caller) if started else None,
        callee_dialled=started.callee_dialled if started else None,
        callee=started.callee if started else None,
        source=started.source if started else None,
        transport=started.transport if started else None,
        subscriber=started.subscriber if started else None,
        peer=started.peer if started else None,
        group=started.group if started else None,
        rule=started.rule if started else None,
        carrier=(answered.carrier if answered else None) or (started.carrier if started else None),
        gateway=answered.target if answered else None,
        attempts=tuple(branches),
        edges=tuple(sorted({e.edge for e in alive})),
        last_seen_at=ms(last_seen),
        mode=started.mode if started else None,
        b2bua_leg_call_id=answered.b2bua_leg_call_id if answered else None,
        transfers=transfers(of_type(mine, CallTransferred)),
    )


def transfers(events: list[CallTransferred]) -> tuple[TransferAttempt, ...]:
    """A B2BUA call's transfers, in the order they ended (a duplicate event is one)."""
    made = {
        TransferAttempt(
            at=ms(t.at), target=t.target, ok=t.ok, status=t.status, reason=t.reason,
            failed_at=t.failed_at, leg_call_id=t.b2bua_leg_call_id,
        )
        for t in events
    }  # fmt: skip # the fields on two lines
    return tuple(sorted(made, key=lambda t: (t.at, t.leg_call_id, t.status)))


def failure_disposition(failed: CallFailed) -> Disposition:
    """What a final non-2xx means to billing: the edge's cause first, else the status."""
    if failed.origin == "edge" and failed.cause is not None:
        by_cause: dict[str, Disposition] = {
            "unrouted": "unrouted",
            "rejected": "rejected",
            "timeout": "no_answer",
            "limit": "busy" if failed.status in BUSY_STATUSES else "failed",
            "unavailable": "failed",
        }
        return by_cause[failed.cause]
    if failed.status in BUSY_STATUSES:
        return "busy"
    if failed.status in NO_ANSWER_STATUSES:
        return "no_answer"
    if failed.status == CANCELLED_STATUS:
        return "cancelled"
    if failed.origin == "edge" and failed.status in UNROUTED_STATUSES:
        return "unrouted"
    if failed.origin == "edge" and failed.status in REJECTED_STATUSES:
        return "rejected"
    return "failed"


def ms(at: float) -> float:
    return round(at, 3)


def ms_or_none(at: float | None) -> float | None:
    return None if at is None else ms(at)
