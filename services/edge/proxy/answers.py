"""The proxy core's state, the answers it makes itself, and its failure reports.

`Answers` is the root of `Proxy`'s class chain (`Answers` ← `CallRecords` ←
`Forking` ← `MediaRelaying` ← `NextHop` ← `Proxy`, one responsibility per module): it holds the
transaction table and every per-transaction map, and sends responses through
a server transaction — its own (`_answer`: 100, 404, 480, ...) hidden like a
relayed one where topology hiding restored the request.  A branch's
failure worth the health service's attention becomes a `GatewayFailed` or
`DestinationFailed` event (`_note_failure`).  One class chain rather than
collaborating objects keeps every call on the hot path a plain method call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from services.edge import metrics
from services.edge.destinations import ActiveCalls
from services.edge.policy.overload import LoadShedder
from services.edge.proxy.actions import Action, Publish, Send
from services.edge.proxy.branches import BranchMaker
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.dialogs import DialogGate
from services.edge.proxy.forwarding import Branch, Forwarding, Parked, failover_allowed
from services.edge.proxy.interfaces import Interfaces
from services.edge.proxy.media import MediaSettings, Unsent
from services.edge.proxy.parked_acks import ParkedAcks
from services.edge.proxy.routes import NumberRouter
from services.edge.proxy.stages import PolicyStages
from services.edge.proxy.subscribers import Subscribers
from shared.contracts.edge import DestinationFailed, FailureReason, GatewayFailed
from shared.limits.model import LimitQuery
from shared.sip.branch import new_tag
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.responses import error_response, make_response
from shared.sip.timers import TimerQueue, TimerSettings
from shared.sip.transaction import (
    AckReceived,
    ClientTransaction,
    ServerTransaction,
    Terminated,
    TransactionEvent,
    TransactionTable,
)
from shared.sip.transport.base import LogThrottle
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from services.edge.policy import PolicyContext

log = logging.getLogger("callmesh.edge")

DEFAULT_UDP_MTU: Final = 1300
"""RFC 3261 §18.1.1's size for a path MTU not known."""


def _claims_all(message: Request | Response) -> bool:
    """Every message under a pair's Call-ID is the pair's (no adapter said otherwise)."""
    return True


@dataclass(frozen=True, slots=True)
class ProxyTimers:
    """The failover timers: `fr` without any answer, `fr_inv` after a provisional (Timer C)."""

    fr: float = 5.0
    fr_inv: float = 60.0
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def transaction_settings(self) -> TimerSettings:
        return TimerSettings(t1=self.t1, t2=self.t2, t4=self.t4, timer_c=self.fr_inv)


class Answers:
    """The state of one worker's proxy and the responses it sends upstream."""

    def __init__(
        self,
        interfaces: Interfaces,
        router: NumberRouter,
        timers: ProxyTimers | None = None,
        policies: PolicyStages | None = None,
        *,
        subscribers: Subscribers | None = None,
        calls: ActiveCalls | None = None,
        shedder: LoadShedder | None = None,
        udp_mtu: int = DEFAULT_UDP_MTU,
        dialogs: DialogGate | None = None,
        call_events: CallEvents | None = None,
        media: MediaSettings | None = None,
    ) -> None:
        self.udp_mtu = udp_mtu
        """Requests larger than this go by TCP where they may (RFC 3261 §18.1.1; 0: never)."""
        self.policies = PolicyStages() if policies is None else policies
        """Protection, topology hiding, routing hook, manipulation (the default: none)."""
        self.shedder = shedder
        """Refuses new calls (503) while the adapter sees the loop lag (None: never)."""
        self.interfaces = interfaces
        self.router = router
        self.timers = timers or ProxyTimers()
        self.subscribers = subscribers
        self.dialogs = DialogGate.closed() if dialogs is None else dialogs
        """Who may follow a route set (signed Record-Route, trusted sources)."""
        self.call_events = call_events
        """Makes the `edge.call.…` events (None: `CALLMESH_CALL_EVENTS` off, none made)."""
        self.media = media
        """Media relay through rtpengine (None: `CALLMESH_RTPENGINE` unset, no media work)."""
        self._media_held: dict[int, Forwarding | tuple[Branch, Response] | Unsent] = {}
        """What waits for rtpengine, by the ticket of its `Media` action."""
        self._media_tickets = 0
        self._parked: dict[ServerTransaction, Parked] = {}
        self.b2bua_calls: Container[str] | None = None
        """The Call-IDs of the B2BUA's pairs, whose messages are handed to it (`HandOff`) if
        `b2bua_claims` says they are the pair's; set by the adapter that runs one (None: no
        B2BUA, a b2bua rule's calls are proxied)."""
        self.b2bua_claims: Callable[[Request | Response], bool] = _claims_all
        """Whether a message under a pair's Call-ID is the pair's (a Call-ID is the caller's
        choice: another caller may use it, and the caller's retry is a new call)."""
        self.b2bua_tags: str | None = None
        """What the B2BUA's own tags start with, when pairs are shared (Redis): an in-dialog
        request naming one, with no signed route of ours, is handed over to be adopted."""
        self.calls = ActiveCalls() if calls is None else calls
        """Calls per dispatcher destination: the same object the router's sets read."""
        self.table = TransactionTable(self.timers.transaction_settings())
        self._fr_timers: TimerQueue[Branch] = TimerQueue()
        self._branches: dict[ClientTransaction, Branch] = {}
        self._forwardings: dict[ServerTransaction, Forwarding] = {}
        self._resolving: dict[ServerTransaction, Forwarding] = {}
        """Forwardings whose next hop, given by name, waits for DNS (`Resolve`)."""
        self._parked_acks = ParkedAcks()
        """Stateless ACKs whose next hop, given by name, waits for DNS (`ResolveAck`)."""
        self._channeling: dict[ServerTransaction, tuple[Forwarding, LimitQuery]] = {}
        """Forwardings failing over to a capped gateway, waiting for its channel (`Acquire`)."""
        self._restored: dict[ServerTransaction, PolicyContext] = {}
        """A hidden dialog's requests from its outside; our own answers go back hidden."""
        self._branch_maker = BranchMaker()
        self._to_tag = new_tag()
        self._drops_logged = LogThrottle()
        """Junk is answered or dropped per message but logged once per 10 s (a flood of it
        would otherwise flood the log), the next line saying how many went unlogged."""

    def _answer(
        self,
        server: ServerTransaction,
        status: int,
        reason: str | None,
        now: float,
        actions: list[Action],
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        response = make_response(
            server.request, status, reason, to_tag=self._to_tag, headers=headers
        )
        self._respond(server, self._local(server, response), now, actions)
        return response

    def _local(self, server: ServerTransaction, response: Response) -> Response:
        """A response of our own: hidden like a relayed one if `server`'s request was restored.

        It is made from the restored request, so it carries the inside's
        Call-ID and identities; the outside must see what it sent.
        """
        context = self._restored.get(server)
        if context is not None:
            destination = server.destination
            outbound = self.interfaces.outbound(destination.transport, destination.host)
            self.policies.hide_answer(response, context, outbound)
        return response

    def _respond(
        self, server: ServerTransaction, response: Response, now: float, actions: list[Action]
    ) -> None:
        metrics.RESPONSES[response.status] += 1
        if response.status >= 300:  # a failed call frees its leases
            self.policies.failure_sent(server.request)
        for event in server.respond(response, now):
            self._server_event(server, event, actions)

    def _server_event(
        self, server: ServerTransaction, event: TransactionEvent, actions: list[Action]
    ) -> None:
        if isinstance(event, Send):
            actions.append(event)
        elif isinstance(event, Terminated):
            self._forwardings.pop(server, None)
            self._restored.pop(server, None)
        elif isinstance(event, AckReceived):
            log.debug("ACK for a 2xx matched a server transaction; dropped")

    def _reject_unparsed(
        self,
        data: bytes,
        error: SipError,
        source: Destination,
        now: float,
        actions: list[Action],
    ) -> None:
        """A stateless answer (400, 505, ...) straight back to the sender; responses are dropped."""
        answer = error_response(data, error)
        if answer is None:
            self._log_drop("unanswerable message", source, error.reason, now)
            return
        metrics.RESPONSES[error.status] += 1
        actions.append(Send(answer, source))

    def _log_drop(self, what: str, source: Destination, reason: str, now: float) -> None:
        unlogged = self._drops_logged.due(what, now)
        if unlogged is not None:
            log.info(
                "dropped %s from %s: %s (%d more dropped since the last such line)",
                what,
                source.host,
                reason,
                unlogged,
            )

    def _note_failure(
        self,
        branch: Branch,
        response: Response,
        local: FailureReason | None,
        now: float,
        actions: list[Action],
    ) -> None:
        """Count a branch's final failure; report a gateway's or destination's to health; a
        DNS target's failure marks that target alone (the next calls try it last)."""
        hop = branch.hop
        status = response.status
        call_id = branch.forwarding.request.call_id
        if hop.set_id is not None:
            self.calls.branch_failed(hop.set_id, hop.set_uri, call_id)
        if not failover_allowed(status):
            return
        if local is None and status == 408:
            return  # the gateway said 408 itself: it is alive
        retry_after = _leading_int(response.header("retry-after"))
        if hop.target:
            self.router.target_failed(hop.target, now, retry_after)
        facts = {
            "reason": local or "status",
            "status": status,
            "retry_after": retry_after,
            "method": branch.forwarding.method,
            "call_id": call_id,
            "target": hop.target,
        }
        event: GatewayFailed | DestinationFailed
        if hop.gateway_id is not None:
            metrics.GATEWAY_FAILURES[hop.gateway_id] += 1
            event = GatewayFailed.model_validate(
                {**facts, "gateway_id": hop.gateway_id, "address": hop.gateway_address}
            )
        elif hop.set_id is not None:
            metrics.DESTINATION_FAILURES[hop.set_id, hop.set_uri] += 1
            event = DestinationFailed.model_validate(
                {**facts, "set_id": hop.set_id, "address": hop.set_uri}
            )
        else:
            return  # a contact or a plain URI: no health target to report
        actions.append(Publish(event))


def _leading_int(value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.split(";", 1)[0].split("(", 1)[0].strip()
    return int(digits) if digits.isdigit() else None
