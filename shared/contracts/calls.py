"""The ``edge.call.…`` events: what an edge saw of a call, enough to rebuild it without edge memory.

The edges keep no dialog state, so a call record cannot come from any one edge:
the accounting service folds these events, from whichever edges saw them, into
one record per call attempt.  A call attempt is keyed by its Call-ID and the
caller's From tag (``from_tag`` of :class:`CallStarted`).  In-dialog events
(:class:`CallEnded`, :class:`CallUpdated`) carry the request's own From and To
tags as seen: a BYE from the callee has the caller's tag as ``to_tag``.  The
receiver matches either tag against the attempt's, and so learns which side
hung up without the edge having to know.

Every event carries ``at`` (Unix time in seconds, millisecond precision, taken
when the edge saw the message) and ``edge`` (the instance that saw it).  An
event may arrive twice, late, out of order or from two edges (a BYE
retransmitted through another edge after a restart): the receiver's fold must
not depend on order or count.  The edge publishes them without ever making SIP
wait: a lost broker costs records, never calls.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.event import Event

TargetKind = Literal["gateway", "contact", "destination", "uri"]
"""What a branch went to: a routing-table gateway, a registered contact, a
dispatcher destination, or a request URI the edge forwarded as it was."""

FailureOrigin = Literal["upstream", "edge"]
"""Who made a final failure: a gateway/phone's answer relayed (``upstream``),
or the edge itself (``edge``: no route, refused, a limit, every branch timed out)."""

EdgeCause = Literal["unrouted", "rejected", "limit", "timeout", "unavailable"]
"""Why the edge answered a call itself: ``unrouted`` (no rule or contact: 404/484/480),
``rejected`` (authentication, ACL, protection: 401/403/407), ``limit`` (a call or rate
limit: 486/503), ``timeout`` (no branch answered in time: 408), ``unavailable``
(every branch failed to send or answered 5xx)."""


class CallEvent(Event):
    """What every call event carries."""

    call_id: str
    at: float
    edge: str


class CallStarted(CallEvent):
    """An INVITE out of dialog was accepted for routing (after authentication and checks).

    ``callee_dialled`` is the Request-URI's user as received, ``callee`` the
    number or AoR after the dialplan; ``source`` is ``ip:port``; ``subscriber`` the
    authenticated AoR, if any; ``rule``, ``group`` and ``carrier`` what routing
    picked, when a number was routed (``None`` for a call to a subscriber);
    ``peer`` the peer (``PUT /v1/peers/{id}``) the call came from, if any;
    ``mode`` is ``b2bua`` when the edge's B2BUA carries the call (docs/b2bua.md: the
    events that follow are the caller's leg's), ``None`` when it is proxied.
    """

    routing_key: ClassVar[str] = "edge.call.started"

    from_tag: str
    caller: str
    callee_dialled: str
    callee: str
    source: str
    transport: str
    subscriber: str | None = None
    rule: str | None = None
    group: str | None = None
    carrier: str | None = None
    peer: str | None = None
    mode: Literal["b2bua"] | None = None


class BranchTried(CallEvent):
    """One branch of the INVITE ended: its final answer (or the edge's own 408/503 for it).

    ``target`` names it (gateway id, contact URI, ``set:uri`` of a dispatcher
    destination, or the URI); ``address`` is where it was sent; ``sent_at`` when
    the INVITE left, ``at`` when the final answer came.  ``status`` 2xx means this
    branch answered (:class:`CallAnswered` follows).
    """

    routing_key: ClassVar[str] = "edge.call.branch"

    from_tag: str
    target: str
    target_kind: TargetKind
    address: str
    carrier: str | None = None
    sent_at: float
    status: int
    reason: str = ""


class CallRinging(CallEvent):
    """The first provisional answer of 180 or 183 relayed upstream for the attempt."""

    routing_key: ClassVar[str] = "edge.call.ringing"

    from_tag: str
    status: int


class DialogLeg(BaseModel):
    """One party of an answered call as the edge must address it to end the call later.

    Why in the event: the edges keep no dialog state, so a hang-up from the API
    (``POST /v1/calls/{id}:hangup``) builds its BYE to each party from this,
    kept by the accounting service while the call is open.  ``from_header`` and
    ``to_header`` are the From and To (with tags) of a request *to* this party;
    ``routes`` the Route set from the edge toward it (the proxies between, not
    the edge); ``address``/``transport`` the next hop the edge uses for it (the
    caller's: where its INVITE came from, its flow behind NAT; the callee's:
    where the INVITE went).
    """

    model_config = ConfigDict(frozen=True)

    call_id: str
    """The Call-ID as this party knows it (topology hiding may mask it on one side)."""
    target: str
    """Its remote target: the caller's Contact URI from the INVITE, the callee's from the 2xx."""
    from_header: str
    to_header: str
    routes: tuple[str, ...] = ()
    address: str
    transport: str


class CallAnswered(CallEvent):
    """A 2xx to the INVITE was relayed upstream: the dialog's To tag and who answered.

    ``cseq``, ``caller_leg`` and ``callee_leg`` (added later, so ``None`` in an
    older edge's event) are what a BYE to each party needs.
    """

    routing_key: ClassVar[str] = "edge.call.answered"

    from_tag: str
    to_tag: str
    target: str
    target_kind: TargetKind
    address: str
    carrier: str | None = None
    cseq: int | None = None
    """The INVITE's CSeq number (the caller's sequence)."""
    caller_leg: DialogLeg | None = None
    callee_leg: DialogLeg | None = None
    b2bua_leg_call_id: str | None = None
    """A B2BUA call's other leg: the Call-ID of the edge's dialog with the target that
    answered (the event's own ``call_id`` is the caller's); ``None`` for a proxied call."""


class CallFailed(CallEvent):
    """A final non-2xx answer to the INVITE was sent upstream (not after a CANCEL: see below).

    ``origin`` says whether it was relayed or made by the edge (then ``cause``
    says why).
    """

    routing_key: ClassVar[str] = "edge.call.failed"

    from_tag: str
    status: int
    reason: str = ""
    origin: FailureOrigin
    cause: EdgeCause | None = None


class CallCancelled(CallEvent):
    """The caller's CANCEL was accepted for an INVITE still pending."""

    routing_key: ClassVar[str] = "edge.call.cancelled"

    from_tag: str


class CallEnded(CallEvent):
    """A BYE passed the edge and its final answer came (``status``; 408 if none came).

    ``from_tag``/``to_tag`` are the BYE's own; ``at`` is when the BYE was seen.
    ``by_edge`` is set when the edge itself ended the call (a limit or timer).
    """

    routing_key: ClassVar[str] = "edge.call.ended"

    from_tag: str
    to_tag: str
    status: int
    by_edge: bool = False


class CallUpdated(CallEvent):
    """A re-INVITE or UPDATE within the dialog passed the edge: a sign the call is alive."""

    routing_key: ClassVar[str] = "edge.call.updated"

    from_tag: str
    to_tag: str
    method: Literal["INVITE", "UPDATE"]


class CallTransferred(CallEvent):
    """The edge's B2BUA tried to move an answered call's far end (``POST
    /v1/calls/{id}:transfer``, docs/b2bua.md): the caller's leg kept, a new leg toward
    ``target``.

    ``from_tag`` is the caller's (the attempt's), ``to_tag`` the edge's on the caller's leg.
    ``ok``: the call now joins the caller and the target on ``b2bua_leg_call_id`` (the old leg,
    ``replaced_leg_call_id``, got a BYE); else it stays as it was, and ``failed_at`` says
    where it failed (``target``: the new leg's INVITE; ``caller``: the caller's re-INVITE;
    ``call``: the call ended meanwhile) with ``status`` and ``reason`` (``by_edge``: the
    edge's own, a timeout or a failure to send).  The accounting service folds it into the
    record's ``transfers``.
    """

    routing_key: ClassVar[str] = "edge.call.transferred"

    from_tag: str
    to_tag: str
    target: str
    ok: bool
    status: int
    reason: str = ""
    by_edge: bool = False
    failed_at: Literal["target", "caller", "call"] | None = None
    b2bua_leg_call_id: str
    replaced_leg_call_id: str | None = None


ANSWERED_LEGS: Final = frozenset({"cseq", "caller_leg", "callee_leg"})
"""The fields `CallAnswered` gained after it was first deployed (``None`` from older edges)."""
STARTED_PEER: Final = frozenset({"peer"})
"""The field `CallStarted` gained after it was first deployed (``None`` from older edges)."""
STARTED_MODE: Final = frozenset({"mode"})
"""`CallStarted`'s B2BUA mark, added later still (``None``: a proxied call, or an older edge)."""
ANSWERED_B2BUA: Final = frozenset({"b2bua_leg_call_id"})
"""`CallAnswered`'s B2BUA leg, added later (``None``: a proxied call, or an older edge)."""


CALL_EVENT_TYPES: Final[dict[str, type[CallEvent]]] = {
    kind.routing_key: kind
    for kind in (
        CallStarted,
        BranchTried,
        CallRinging,
        CallAnswered,
        CallFailed,
        CallCancelled,
        CallEnded,
        CallUpdated,
        CallTransferred,
    )
}
"""Every call event type by its routing key: how a reader of events kept as text
(the accounting service's rows, an edge's outbox journal) finds the type again."""

MAX_BATCH_EVENTS: Final = 1000
"""Events one :class:`CallEventBatch` may carry (a longer one is refused, dead-lettered)."""


class BatchedCallEvent(BaseModel):
    """One event inside a :class:`CallEventBatch`: type and version as an envelope has them."""

    model_config = ConfigDict(frozen=True)

    type: str
    schema_version: int
    data: dict[str, Any]


class CallEventBatch(Event):
    """Several call events of one edge worker in one message (``edge.call.batch``).

    Why: every call makes about seven events, and a consumer pays far more to
    receive a message than to read one more event out of it. So when events
    wait in an edge worker's backlog (under load: at a few calls a second each
    goes alone, at once) its publisher sends up to ``CALLMESH_EDGE_EVENT_BATCH``
    of them as one message. The events inside are exactly the single events
    above, in the order the edge saw them; a subscriber of ``edge.call.…``
    reads batches too, or the edges run with ``CALLMESH_EDGE_EVENT_BATCH=1``.
    The edge sends it as a `WrittenCallEventBatch`.
    """

    routing_key: ClassVar[str] = "edge.call.batch"

    events: list[BatchedCallEvent] = Field(max_length=MAX_BATCH_EVENTS)


class WrittenCallEventBatch(Event):
    """A :class:`CallEventBatch` as an edge sends it: its events written as JSON already.

    The same message on the wire (``edge.call.batch``, the same schema version, the same
    JSON), read as a `CallEventBatch`. Why a class of its own: the edge writes each call
    event's fields as JSON once, as it is offered, for its outbox journal's line, and its
    batches are those bytes joined (`shared.contracts.call_event_json`), not a model per
    event whose fields are written again.
    """

    routing_key: ClassVar[str] = CallEventBatch.routing_key
    schema_version: ClassVar[int] = CallEventBatch.schema_version

    events: bytes
    """The JSON array of the batch's items (`call_event_json.batch_json`)."""
    count: int
    """How many events it carries."""

    def json_data(self) -> dict[str, Any]:
        """The events as written: orjson copies a `Fragment` into the envelope's body."""
        return {"events": orjson.Fragment(self.events)}
