"""A dialog pair and the requests relayed across it.

A `Pair` is the call: leg A (the caller's dialog, the edge its UAS) and leg B (the
target's, the edge its UAC), and the times that matter.  A `Relay` is one request
crossing it: the server transaction on the leg it came in on and the client
transaction carrying it out on the other, so each answer goes back the way it came.
A `Progress` is a step of the call its adapter reports (the call events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.edge.b2bua.legs import Leg
from shared.sip.message import Response
from shared.sip.transaction import ClientTransaction, ServerTransaction

Side = Literal["a", "b"]
Step = Literal["branch", "ringing", "answered", "failed", "cancelled", "ended", "transferred"]


@dataclass(slots=True, eq=False)
class Pair:
    """One B2BUA call.  `answered` is when the 2xx went to A, `ended` when a BYE ended it.

    `offering` is the side whose INVITE or UPDATE (an SDP offer) is crossing the pair
    still, None when no offer is outstanding: a second one gets 491 or 500 (§14.2).
    """

    id: str
    a: Leg
    b: Leg
    created: float
    answered: float | None = None
    ended: float | None = None
    offering: Side | None = None

    def leg(self, side: Side) -> Leg:
        return self.a if side == "a" else self.b

    def other(self, side: Side) -> Side:
        return "b" if side == "a" else "a"


@dataclass(slots=True, eq=False)
class Relay:
    """A request that came in on `pair`'s `inbound` leg and goes out on the other.

    `client` is None until it is sent (the caller's INVITE waits for its target).  For an
    INVITE: `answer` is the 2xx sent back, until the inbound side's ACK comes; `ack`
    the ACK sent out for the other side's 2xx, sent again when that 2xx is.
    `cancelled`: the inbound side cancelled it, and `cancel_waits` that the CANCEL
    out waits for a provisional response (§9.1).
    """

    pair: Pair
    inbound: Side
    server: ServerTransaction
    client: ClientTransaction | None = None
    creating: bool = False
    """The caller's INVITE, which creates the pair."""
    answer: Response | None = None
    ack: bytes | None = None
    cancelled: bool = False
    cancel_waits: bool = False
    sent: float = 0.0
    """When its request went out (leg B's INVITE: again on each failover)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A step of `pair`'s call, for its adapter's call events (`engine.B2bua.progress`).

    `branch`: leg B's INVITE (sent at `sent`) got its final answer `status`; `ringing`: a
    180 or 183 on it; `answered`: its 2xx went to the caller; `failed`: the caller got the
    final non-2xx `status` (`by_edge`: one of the edge's own, a timeout or a failure to send
    or keep the answer); `cancelled`: the caller's CANCEL; `ended`: a BYE from `side` (None:
    the edge's own, on both legs) ended the call; `transferred`: a transfer's outcome
    (`transfer`, a `TransferOutcome`).
    """

    pair: Pair
    step: Step
    status: int = 0
    reason: str = ""
    sent: float = 0.0
    by_edge: bool = False
    side: Side | None = None
    transfer: TransferOutcome | None = None


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """How a transfer (`transfer`) ended: `ok` (leg B replaced by leg `leg_call_id` toward
    `target`), else failed at `failed_at` (`target`: leg C's INVITE; `caller`: the re-INVITE of
    leg A; `call`: the call ended meanwhile) with `status` (the edge's own: `by_edge`)."""

    target: str
    ok: bool
    leg_call_id: str
    replaced_call_id: str
    failed_at: Literal["target", "caller", "call", ""] = ""
