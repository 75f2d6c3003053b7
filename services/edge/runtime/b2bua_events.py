"""A B2BUA call's `edge.call.*` events, from the engine's steps (`b2bua.pair.Progress`).

Why here and in this form: accounting folds one record per caller's Call-ID and From tag,
whatever carried the call. So a B2BUA call reports as a proxied one does, under leg A's
Call-ID and the caller's tag: its `CallStarted` (mode b2bua) is the proxy's, at the
hand-off (`proxy.call_records`); the rest are built here with the same `CallEvents` and go
out through the worker's publisher (the outbox journals them first). Its answer names leg
B's Call-ID (`b2bua_leg_call_id`); a BYE's tags say who hung up as a proxied BYE's would
(the caller's tag in From: the caller), or `by_edge` for the edge's own.

Each leg B attempt (the first hop, then one per failover) is one `branch`, its target the
hop the runner gave the engine for it, in the order the runner gave them.
"""

from __future__ import annotations

from collections import deque

from services.edge.b2bua.pair import Pair, Progress
from services.edge.proxy.actions import Publish, Send
from services.edge.proxy.call_events import CallEvents, CallNotes, wall_ms
from services.edge.proxy.routes import Hop
from shared.contracts.calls import CallTransferred, EdgeCause
from shared.sip.message import Request, Response, parse_message


class PairEvents:
    """Makes one worker's B2BUA call events; `forget` a pair once it is let go."""

    def __init__(self, events: CallEvents) -> None:
        self._events = events
        self._trying: dict[str, deque[Hop]] = {}
        """Pair id → the hops given for leg B whose final answer has not come yet, in order."""
        self._answering: dict[str, Hop] = {}
        """Pair id → the hop of its latest branch (the one that answered, for `answered`)."""
        self._rang: set[str] = set()
        self._wall_offsets: dict[str, float] = {}
        """Pair id → the core's wall offset when its leg B first went: all its events are
        stamped with it (`CallNotes.wall_offset`: why one per call)."""

    def trying(self, pair_id: str, hop: Hop) -> None:
        """Leg B goes (again) toward `hop`."""
        self._trying.setdefault(pair_id, deque()).append(hop)
        self._wall_offsets.setdefault(pair_id, self._events.wall_offset)

    def refused(
        self, request: Request, status: int, reason: str, now: float, cause: EdgeCause | None
    ) -> Publish:
        """The caller's INVITE answered by the edge before any leg B (`cause` None: by the
        status, as the proxy's own refusals)."""
        notes = self._events.notes(request, now)
        return self._events.failed(notes, status, reason, now, by_edge=True, cause=cause)

    def refused_at_intake(
        self, data: bytes, sends: list[Send | Publish], now: float
    ) -> list[Publish]:
        """The handed-over INVITE `data` answered by the engine itself, with no `Originate` (an
        extension it required, 420): its failure, so its record does not wait for a timeout
        close."""
        for send in sends:
            if not isinstance(send, Send) or not send.data.startswith(b"SIP/2.0 "):
                continue
            response, request = parse_message(send.data), parse_message(data)
            if (
                isinstance(response, Response)
                and isinstance(request, Request)
                and response.status >= 300
            ):
                return [self.refused(request, response.status, response.reason, now, None)]
        return []

    def published(self, steps: list[Progress], now: float) -> list[Publish]:
        """The events of `steps`, in order (the engine's list, emptied)."""
        out = [event for step in steps if (event := self._event(step, now)) is not None]
        steps.clear()
        return out

    def forget(self, pair_id: str) -> None:
        self._trying.pop(pair_id, None)
        self._answering.pop(pair_id, None)
        self._rang.discard(pair_id)
        self._wall_offsets.pop(pair_id, None)

    def _event(self, step: Progress, now: float) -> Publish | None:
        events, pair = self._events, step.pair
        wall_offset = self._wall_offsets.get(pair.id, events.wall_offset)
        notes = CallNotes(pair.a.call_id, pair.a.remote_tag or "", "", now, wall_offset)
        if step.step == "branch":
            trying = self._trying.get(pair.id)
            if not trying:
                return None  # an adopted pair's (answered elsewhere): no branch of ours
            hop = self._answering[pair.id] = trying.popleft()
            return events.branch(
                notes, hop, sent_at=step.sent, status=step.status, reason=step.reason, now=now
            )
        if step.step == "ringing":
            if pair.id in self._rang:
                return None
            self._rang.add(pair.id)
            return events.ringing(notes, step.status, now)
        if step.step == "answered":
            answering = self._answering.get(pair.id)
            if answering is None:
                return None
            return events.answered(
                notes, answering, pair.a.local_tag, now, b2bua_leg=pair.b.call_id
            )
        if step.step == "failed":
            cause: EdgeCause | None = (
                ("timeout" if step.status == 408 else "unavailable") if step.by_edge else None
            )
            return events.failed(
                notes, step.status, step.reason, now, by_edge=step.by_edge, cause=cause
            )
        if step.step == "cancelled":
            return events.cancelled(notes, now)
        if step.step == "transferred":
            return self._transferred(step, wall_ms(now, wall_offset))
        bye = _bye_notes(pair, step, now, wall_offset)
        return events.ended(bye, step.status, by_edge=step.by_edge)

    def _transferred(self, step: Progress, at: float) -> Publish | None:
        """A transfer's outcome (`b2bua.transfer`), under the caller's Call-ID and tags."""
        outcome, pair = step.transfer, step.pair
        if outcome is None:
            return None
        event = CallTransferred(
            call_id=pair.a.call_id,
            at=at,
            edge=self._events.edge,
            from_tag=pair.a.remote_tag or "",
            to_tag=pair.a.local_tag,
            target=outcome.target,
            ok=outcome.ok,
            status=step.status,
            reason=step.reason,
            by_edge=step.by_edge,
            failed_at=outcome.failed_at or None,
            b2bua_leg_call_id=outcome.leg_call_id,
            replaced_leg_call_id=outcome.replaced_call_id or None,
        )
        return Publish(event)


def _bye_notes(pair: Pair, step: Progress, now: float, wall_offset: float) -> CallNotes:
    """The BYE's tags as leg A names them: the caller's in From when the caller hung up, the
    edge's leg A tag in From when the target did (what a proxied BYE from the callee has)."""
    caller, edge = pair.a.remote_tag or "", pair.a.local_tag
    from_tag, to_tag = (edge, caller) if step.side == "b" else (caller, edge)
    return CallNotes(pair.a.call_id, from_tag, to_tag, now, wall_offset)
