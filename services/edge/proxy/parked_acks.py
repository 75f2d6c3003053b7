"""The stateless ACKs waiting for DNS: bounded in number and in time, sans-IO.

An ACK for a 2xx whose next hop is a name the DNS cache lacks waits here
while the adapter asks DNS (`ResolveAck`), keyed by a ticket.  Nothing else
holds it: it has no transaction, so no retransmission of it is absorbed and
nothing times it out.  Hence two bounds of its own:

- at most `limit` parked at once: past it an ACK is dropped (counted), as a
  flood of ACKs to cold names must not grow memory; the UAS retransmits its
  2xx until an ACK comes (RFC 3261 §13.3.1.4), and each brings a new ACK;
- `deadline` seconds: an ACK whose DNS answer comes later is dropped
  (counted) instead of sent; the slot of one whose answer never comes is
  taken back when the store is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from services.edge import metrics
from services.edge.proxy.dialogs import OwnRoute
from services.edge.proxy.routes import Hop
from shared.sip.message import Request

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext

MAX_PARKED_ACKS: Final = 1000
"""ACKs waiting for DNS at once, per worker: far more than the calls a worker sets up while
one name is asked for, far less memory (a few MB) than a flood could otherwise pin."""
ACK_DNS_DEADLINE: Final = 10.0
"""Seconds an ACK may wait for DNS: past the three steps of RFC 3263 at the default query
timeout (2 s each), well within the 32 s (64·T1) the UAS retransmits its 2xx for."""


@dataclass(slots=True, init=False)
class ParkedAck:
    """An ACK routed as far as its next hop (Routes processed, not yet Via-stamped)."""

    request: Request
    own: OwnRoute
    policy: PolicyContext | None
    hop: Hop
    parked_at: float
    rounds: int
    """DNS round trips it has waited for (NAPTR, SRV, addresses)."""

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        request: Request,
        own: OwnRoute,
        policy: PolicyContext | None,
        hop: Hop,
        parked_at: float,
        rounds: int = 0,
    ) -> None:
        self.request = request
        self.own = own
        self.policy = policy
        self.hop = hop
        self.parked_at = parked_at
        self.rounds = rounds


class ParkedAcks:
    """Tickets to parked ACKs; `park` refuses past the limit, `take` past the deadline."""

    def __init__(self, limit: int = MAX_PARKED_ACKS, deadline: float = ACK_DNS_DEADLINE) -> None:
        self.limit = limit
        self.deadline = deadline
        self._acks: dict[int, ParkedAck] = {}
        self._tickets = 0

    def __len__(self) -> int:
        return len(self._acks)

    def park(self, ack: ParkedAck, now: float) -> int | None:
        """A ticket for `ack`, or None (dropped and counted) when `limit` wait already."""
        if len(self._acks) >= self.limit:
            self._drop_overdue(now)
            if len(self._acks) >= self.limit:
                metrics.ACKS_DROPPED["parked_full"] += 1
                return None
        self._tickets += 1
        self._acks[self._tickets] = ack
        return self._tickets

    def take(self, ticket: int, now: float) -> ParkedAck | None:
        """The ACK of `ticket`, unless its deadline passed (dropped and counted) or it is gone."""
        ack = self._acks.pop(ticket, None)
        if ack is not None and now - ack.parked_at > self.deadline:
            metrics.ACKS_DROPPED["deadline"] += 1
            return None
        return ack

    def _drop_overdue(self, now: float) -> None:
        """Free the slots of ACKs past their deadline (their answer never came back)."""
        overdue = [t for t, ack in self._acks.items() if now - ack.parked_at > self.deadline]
        for ticket in overdue:
            del self._acks[ticket]
        if overdue:
            metrics.ACKS_DROPPED["deadline"] += len(overdue)
