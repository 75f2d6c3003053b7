"""The policy stages: every point where the proxy core asks its policies, and their no-op.

The core always holds one `PolicyStages` and calls it unconditionally.  This
class is both the protocol and the default: each stage does nothing (lets the
message through unchanged) at the cost of one method call.
`services.edge.policy.EdgePolicies` overrides the stages with protection,
topology hiding, the routing hook and header manipulation.  A base class
rather than a `typing.Protocol` because, compiled by mypyc, a call on a
native base class is a vtable call where a protocol's would be a Python
attribute lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.edge.proxy.actions import Action
from services.edge.proxy.interfaces import Interface
from services.edge.proxy.media import Policy
from services.edge.proxy.routes import Found, Hop
from shared.fraud.rules import FraudQuery, FraudVerdict
from shared.limits.model import LimitQuery, LimitVerdict
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from shared.sip.via import Via

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext


class PolicyStages:
    """No policy at all: nothing is dropped, refused, restored, hidden or rewritten."""

    # ----- before parsing / outside transactions ----------------------------------------

    def drop_flood(
        self, data: bytes, source: Destination, now: float, actions: list[Action]
    ) -> bool:
        """Raw bytes from `source`, before parsing: True drops them."""
        return False

    def refuse_connection(self, source: Destination, now: float, actions: list[Action]) -> bool:
        """A new TCP connection from `source`, counted like a request: True refuses it."""
        return False

    def screen(
        self,
        request: Request,
        source: Destination,
        now: float,
        actions: list[Action],
        context: PolicyContext | None = None,
    ) -> bool:
        """A request outside any transaction: True when it was refused (answer in `actions`)."""
        return False

    def inbound(self, request: Request) -> PolicyContext | None:
        """A request outside any transaction, before routing: restored if from the outside."""
        return None

    def restore_response(self, response: Response) -> bool:
        """False: drop the response (a bad topology token)."""
        return True

    # ----- routing a number -------------------------------------------------------------

    def admit_call(self, request: Request, source: Destination, now: float) -> PolicyContext | None:
        """Before a number is routed: raises SipError to refuse the call."""
        return None

    def call_ended(self, call_id: str) -> None:
        """A BYE that passed the dialog check: the call's limit slots are free again."""

    def fraud_for(self, request: Request, peer: str | None, number: str) -> FraudQuery | None:
        """The fraud counts a new call to `number` is asked about; None: no rule watches its
        caller (no round trip)."""
        return None

    def screened(self, query: FraudQuery, verdict: FraudVerdict | None) -> None:
        """Apply the fraud `verdict` (None: not known): raises SipError to refuse the call."""

    def limits_for(
        self, request: Request, source: Destination, peer: str | None, hops: list[Hop], now: float
    ) -> LimitQuery | None:
        """The shared limits a new call to `hops` is held to; None: none (no round trip)."""
        return None

    def limited(
        self,
        request: Request,
        query: LimitQuery,
        verdict: LimitVerdict | None,
        hops: list[Hop],
        now: float,
    ) -> list[Hop]:
        """Apply the shared limits' `verdict` (None: not known): raises SipError to refuse
        the call, else the hops to try (without the gateways at their channel cap)."""
        return hops

    def channel_for(self, call_id: str, hop: Hop) -> LimitQuery | None:
        """A failover to `hop`: the channel to take there first; None: nothing to take."""
        return None

    def channel_taken(self, query: LimitQuery, verdict: LimitVerdict | None, now: float) -> bool:
        """The answer to `channel_for`'s query: False skips the hop (at its cap)."""
        return True

    def decide(self, request: Request, source: Destination, number: str, found: Found) -> Found:
        """The routing table's answer for `number`, which a hook may replace."""
        return found

    def media_policy(self, hop: Hop) -> Policy | None:
        """The routing table's media relay policy toward `hop` (None: it sets none)."""
        return None

    # ----- branches and responses -------------------------------------------------------

    def outgoing(
        self, request: Request, context: PolicyContext | None, hop: Hop, outbound: Interface
    ) -> None:
        """A branch's request, its Via (and Record-Route) added, before it is sent."""

    def upstream(self, response: Response, popped: Via, outbound: Interface) -> None:
        """A response relayed upstream, the edge's Via popped."""

    def hide_answer(self, response: Response, context: PolicyContext, outbound: Interface) -> None:
        """A response the edge made itself to a restored request (`context.restored`)."""

    def failure_sent(self, request: Request) -> None:
        """A final failure (3xx to 6xx) sent upstream for `request`.  Not a 2xx: it may be a
        retransmission, and the request held as bytes by then."""
