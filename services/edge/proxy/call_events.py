"""The edge's call events (`shared.contracts.calls`), built for the proxy core's hot path.

Why here: the core already holds, for an INVITE's life, everything a call
record needs (the request, the hops, each branch's send time); this module
turns those into events without a dialog table.  `CallNotes` is what one
forwarding (an out-of-dialog INVITE, or a BYE) adds to that for its events.

Every event of a call is built without validation (`shared.contracts.unvalidated`): its fields
come from a request the core has already parsed and checked, so validating
them again would only cost time on every call.  `at` is wall time: the core
runs on the loop's monotonic clock, and the runtime keeps `wall_offset`
current (as it does for the nonces).

A call's answer is stamped when the edge sends the 2xx on toward the caller
(`clock`, read once per answer), not when the gateway's 2xx arrived: that is
when the caller is answered, what it bills from, and what Kamailio's and
OpenSIPS's `acc` record (on the reply sent out).  The two differ by the
loop's lag in reading and relaying the 2xx, tens of milliseconds at load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from services.edge.proxy.actions import Publish
from services.edge.proxy.routes import Hop
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    CallStarted,
    CallUpdated,
    DialogLeg,
    EdgeCause,
    TargetKind,
)
from shared.contracts.unvalidated import unvalidated
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri, TelUri

RINGING = frozenset({180, 183})
"""The provisionals a `CallRinging` reports (a 181 or 182 is no ringing)."""


@dataclass(slots=True, init=False)
class CallNotes:
    """One forwarding's part of a call: its keys, and what it has reported so far.

    For an INVITE: `rang` once a `CallRinging` went out.  For a BYE: its own
    To tag and when it was seen (`CallEnded` goes out with its final answer).

    `wall_offset` is the core's at `seen_at`, and every event of the forwarding is stamped
    with it: the runtime re-measures the core's every 100 ms (`runtime.loop_probe`), and
    a failover's branch sent a fraction of a millisecond after the first, its answer
    published after a new measurement a little lower, would come out stamped before it.
    On one offset a call's stamps keep the order and the gaps of the monotonic clock.
    """

    call_id: str
    from_tag: str
    to_tag: str
    seen_at: float
    wall_offset: float
    rang: bool

    def __init__(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str = "",
        seen_at: float = 0.0,
        wall_offset: float = 0.0,
        *,
        rang: bool = False,
    ) -> None:
        self.call_id = call_id
        self.from_tag = from_tag
        self.to_tag = to_tag
        self.seen_at = seen_at
        self.wall_offset = wall_offset
        self.rang = rang


def edge_cause(status: int) -> EdgeCause:
    """Why the edge answered a call `status` itself, by the contract's classes."""
    if status in (404, 480, 484):
        return "unrouted"
    if status in (486, 503):
        return "limit"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "unavailable"
    return "rejected"


def host_port(destination: Destination) -> str:
    host = destination.host
    return f"[{host}]:{destination.port}" if ":" in host else f"{host}:{destination.port}"


def dialled(request: Request) -> str:
    """The Request-URI's user as received (a tel: URI's number; else the URI itself)."""
    uri = request.uri
    if isinstance(uri, SipUri):
        return uri.user or ""
    if isinstance(uri, TelUri):
        return uri.number
    return request.uri_text


def _target(hop: Hop) -> tuple[str, TargetKind]:
    if hop.gateway_id is not None:
        return hop.gateway_id, "gateway"
    if hop.set_id is not None:
        return f"{hop.set_id}:{hop.set_uri}", "destination"
    if hop.q is not None:
        return hop.uri, "contact"
    return hop.uri, "uri"


def wall_ms(now: float, wall_offset: float) -> float:
    """The core's `now` as Unix time, to the millisecond (a half rounded up).

    Why not ``round(t, 3)``: that rounds in decimal through a string (~3,000
    instructions, six times a call); this is within a millisecond of it, and whole.  Nor
    ``round(t * 1000)``: compiled, each call looked ``round`` up among the builtins by name
    and called it through Python (~900 instructions, eight times a call), where
    `math.floor` of a float is compiled to C."""
    return math.floor((now + wall_offset) * 1000 + 0.5) / 1000


UNMATCHED_ANSWERS_PER_SECOND: Final = 50
"""Unmatched 2xxs (no transaction: its edge restarted) published per second per worker."""


class CallEvents:
    """Makes this edge's call events; one per proxy core (None there: call events off)."""

    __slots__ = ("_unmatched", "_unmatched_second", "clock", "edge", "wall_offset")

    def __init__(
        self, edge: str, wall_offset: float = 0.0, clock: Callable[[], float] | None = None
    ) -> None:
        self.edge = edge
        """The instance id, as the bus envelope names it."""
        self.wall_offset = wall_offset
        """Wall time minus the core's clock; the runtime keeps it current."""
        self.clock = clock
        """The core's clock read now (the runtime's loop time): when a 2xx is relayed, its
        send time; None: the time the core was given (the 2xx's arrival)."""
        self._unmatched: set[tuple[str, str]] = set()
        """(Call-ID, To tag) of the unmatched 2xxs published in the current second."""
        self._unmatched_second = -1

    def at(self, now: float) -> float:
        """The core's `now` as Unix time, to the millisecond (on the current offset)."""
        return wall_ms(now, self.wall_offset)

    def after(self, notes: CallNotes, now: float) -> float:
        """`now` as Unix time on the call's offset, never before its start (`notes.seen_at`).

        Why: a message's `now` is its kernel receive stamp turned to the loop's clock
        (`transport.udp`), and two of them can come out in the wrong order by a millisecond
        or so (a CI run: a 486 stamped 1 ms before the INVITE it answered, 1.3 ms later).
        The records' fold leaves out a failure or a cancel stamped before the call's start
        (a challenge's, `services.accounting.fold`): that call's record stayed open.
        """
        seen_at = notes.seen_at
        return wall_ms(now if now >= seen_at else seen_at, notes.wall_offset)

    def notes(self, request: Request, now: float) -> CallNotes:
        from_tag, to_tag = request.from_tag or "", request.to_tag or ""
        return CallNotes(request.call_id, from_tag, to_tag, now, self.wall_offset)

    def started(
        self,
        request: Request,
        source: Destination,
        now: float,
        *,
        callee: str | None = None,
        subscriber: str | None = None,
        rule: str | None = None,
        group: str | None = None,
        peer: str | None = None,
        mode: Literal["b2bua"] | None = None,
    ) -> Publish:
        """`callee` None: the edge refused the call before knowing it (the number as dialled);
        `mode` b2bua: handed to the worker's B2BUA (`runtime.b2bua_runner` reports the rest)."""
        number = dialled(request)
        event = unvalidated(
            CallStarted,
            call_id=request.call_id,
            at=self.at(now),
            edge=self.edge,
            from_tag=request.from_tag or "",
            caller=str(request.from_.uri),
            callee_dialled=number,
            callee=number if callee is None else callee,
            source=host_port(source),
            transport=source.transport,
            subscriber=subscriber,
            rule=rule,
            group=group,
            carrier=None,
            peer=peer,
            mode=mode,
        )
        return Publish(event)

    def branch(
        self, notes: CallNotes, hop: Hop, *, sent_at: float, status: int, reason: str, now: float
    ) -> Publish:
        target, kind = _target(hop)
        event = unvalidated(
            BranchTried,
            call_id=notes.call_id,
            at=self.after(notes, now),
            edge=self.edge,
            from_tag=notes.from_tag,
            target=target,
            target_kind=kind,
            address=host_port(hop.destination),
            carrier=None,
            sent_at=wall_ms(sent_at, notes.wall_offset),
            status=status,
            reason=reason,
        )
        return Publish(event)

    def ringing(self, notes: CallNotes, status: int, now: float) -> Publish:
        event = unvalidated(
            CallRinging,
            call_id=notes.call_id,
            at=self.after(notes, now),
            edge=self.edge,
            from_tag=notes.from_tag,
            status=status,
        )
        return Publish(event)

    def answered(
        self,
        notes: CallNotes,
        hop: Hop,
        to_tag: str,
        now: float,
        *,
        cseq: int | None = None,
        legs: tuple[DialogLeg, DialogLeg] | None = None,
        b2bua_leg: str | None = None,
    ) -> Publish:
        """`legs`: the caller's and the callee's (`call_legs`), for a hang-up from the API;
        `b2bua_leg`: a B2BUA call's leg B Call-ID (`notes` are the caller's leg's)."""
        address = host_port(hop.destination)
        return self._answered(
            notes, to_tag, _target(hop), address, now, cseq=cseq, legs=legs, b2bua_leg=b2bua_leg
        )

    def unmatched_allowed(self, response: Response, now: float) -> bool:
        """Whether an unmatched 2xx may be published: once per dialog and second, and at most
        `UNMATCHED_ANSWERS_PER_SECOND` a second.  Any host can send a 2xx whose top Via names
        the edge: unbounded, each would be an event (a flood into the bus and accounting,
        records with an answer and no start); a restart's real ones are a few dozen."""
        second = int(now)
        if second != self._unmatched_second:
            self._unmatched_second = second
            self._unmatched.clear()
        key = (response.call_id, response.to_tag or "")
        if key in self._unmatched or len(self._unmatched) >= UNMATCHED_ANSWERS_PER_SECOND:
            return False
        self._unmatched.add(key)
        return True

    def answered_unmatched(self, response: Response, source: Destination, now: float) -> Publish:
        """A 2xx to an INVITE relayed with no transaction: the edge that sent the INVITE died
        before its answer (a restart, the other box of a VIP pair); who answered is known
        only by the 2xx's source, so it is the target too, as a URI (no legs: nothing of the
        INVITE is known here, so such a call cannot be hung up from the API)."""
        notes = CallNotes(response.call_id, response.from_tag or "", "", now, self.wall_offset)
        address = host_port(source)
        who: tuple[str, TargetKind] = (f"sip:{address}", "uri")
        return self._answered(notes, response.to_tag or "", who, address, now)

    def _answered(
        self,
        notes: CallNotes,
        to_tag: str,
        who: tuple[str, TargetKind],
        address: str,
        now: float,
        *,
        cseq: int | None = None,
        legs: tuple[DialogLeg, DialogLeg] | None = None,
        b2bua_leg: str | None = None,
    ) -> Publish:
        """`who`: the target answering and its kind.  Stamped when the 2xx goes on to the
        caller: the runtime sends what the core returns at once, so the clock read here is its
        send time (never before `now`: a kernel receive stamp is finer than the loop's clock)."""
        target, kind = who
        caller, callee = legs if legs is not None else (None, None)
        clock = self.clock
        sent = now if clock is None else max(now, clock())
        event = unvalidated(
            CallAnswered,
            call_id=notes.call_id,
            at=self.after(notes, sent),
            edge=self.edge,
            from_tag=notes.from_tag,
            to_tag=to_tag,
            target=target,
            target_kind=kind,
            address=address,
            carrier=None,
            cseq=cseq,
            caller_leg=caller,
            callee_leg=callee,
            b2bua_leg_call_id=b2bua_leg,
        )
        return Publish(event)

    def failed(
        self,
        notes: CallNotes,
        status: int,
        reason: str,
        now: float,
        *,
        by_edge: bool,
        cause: EdgeCause | None = None,
    ) -> Publish:
        """`by_edge`: the edge made the answer (then `cause` says why: by the status if None)."""
        if by_edge and cause is None:
            cause = edge_cause(status)
        event = unvalidated(
            CallFailed,
            call_id=notes.call_id,
            at=self.after(notes, now),
            edge=self.edge,
            from_tag=notes.from_tag,
            status=status,
            reason=reason,
            origin="edge" if by_edge else "upstream",
            cause=cause if by_edge else None,
        )
        return Publish(event)

    def cancelled(self, notes: CallNotes, now: float) -> Publish:
        event = unvalidated(
            CallCancelled,
            call_id=notes.call_id,
            at=self.after(notes, now),
            edge=self.edge,
            from_tag=notes.from_tag,
        )
        return Publish(event)

    def ended(self, notes: CallNotes, status: int, *, by_edge: bool = False) -> Publish:
        """A BYE's final answer came (`at`: when the BYE was seen); `by_edge`: the edge sent it
        (a hang-up from the API)."""
        event = unvalidated(
            CallEnded,
            call_id=notes.call_id,
            at=wall_ms(notes.seen_at, notes.wall_offset),
            edge=self.edge,
            from_tag=notes.from_tag,
            to_tag=notes.to_tag,
            status=status,
            by_edge=by_edge,
        )
        return Publish(event)

    def updated(self, request: Request, now: float) -> Publish:
        method: Literal["INVITE", "UPDATE"] = "INVITE" if request.method == "INVITE" else "UPDATE"
        event = unvalidated(
            CallUpdated,
            call_id=request.call_id,
            at=self.at(now),
            edge=self.edge,
            from_tag=request.from_tag or "",
            to_tag=request.to_tag or "",
            method=method,
        )
        return Publish(event)
