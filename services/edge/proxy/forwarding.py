"""State of one stateful forwarding: a server transaction, its hops, the branches in flight.

Forking (§16.6, §16.7): gateways are tried one at a time, each failure that
allows failover moving on to the next; registered contacts of equal q are
tried in parallel (the first 2xx wins, the others are cancelled) and the next
q goes once they all failed.  The answers collected pick the final response
when the hops run out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.edge.interfaces import Interface
from services.edge.proxy.routes import Hop
from shared.sip.message import Request, Response
from shared.sip.timers import TimerHandle
from shared.sip.transaction import ClientTransaction, ServerTransaction

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext


@dataclass(eq=False, slots=True)
class Branch:
    """One attempt at one hop."""

    forwarding: Forwarding
    hop: Hop
    client: ClientTransaction
    answered: bool = False
    """Any response (even 100) came: the hop is alive."""
    provisional: bool = False
    """A provisional above 100 came: a CANCEL may now be sent (§9.1)."""
    abandoned: bool = False
    """Given up on (timer or CANCEL); late answers are absorbed."""
    cancel_sent: bool = False
    timer: TimerHandle[Branch] | None = None


@dataclass(eq=False, slots=True)
class Forwarding:
    server: ServerTransaction
    request: Request
    """The request as received (top Via stamped), the template of every branch."""
    hops: list[Hop]
    loop_hash: str
    inbound: Interface
    record_route: bool
    branches: list[Branch] = field(default_factory=list)
    """The branches still waiting for a final answer."""
    finals: list[Response] = field(default_factory=list)
    cancelled: bool = False
    declined: bool = False
    """A 6xx came: the other branches are being cancelled, and the 6xx goes upstream
    once they have ended, unless one of them answers 2xx first (§16.7 step 5)."""
    done: bool = False
    policy: PolicyContext | None = None
    """Issue 8: the caller's source group and the hidden dialog's plan, for `EdgePolicies`."""

    @property
    def method(self) -> str:
        return self.request.method


def failover_allowed(status: int) -> bool:
    """408 and 5xx move on to the next gateway (a 6xx or other 4xx is the callee's word)."""
    return status == 408 or 500 <= status < 600


def best_response(finals: list[Response]) -> Response | None:
    """RFC 3261 §16.7 step 6: any 6xx, else the lowest class; the first of it wins."""
    best: Response | None = None
    for response in finals:
        if response.status >= 600:
            return response
        if best is None or response.status // 100 < best.status // 100:
            best = response
    return best


def next_group(hops: list[Hop]) -> list[Hop]:
    """Take the hops to try now off `hops`: one gateway, or every contact of the top q."""
    group = [hops.pop(0)]
    q = group[0].q
    while q is not None and hops and hops[0].q == q:
        group.append(hops.pop(0))
    return group
