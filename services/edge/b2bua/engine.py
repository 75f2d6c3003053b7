"""The B2BUA engine, sans-IO: its inputs, intake and checks.

Bytes, their source and the time go in (`receive`, `expire`, `transport_failed`, and the
outcome of its one round trip: `originate` or `refuse`); `Send` and `Originate` actions
come out.  A caller's INVITE is answered with 100 and an `Originate`: the adapter picks
its target (routing, not this engine's job) and calls `originate`, which sends leg B's
INVITE.  Everything after that is relaying (`relaying`).

Checks, each answered as RFC 3261 says rather than dropped: a request that does not parse
is answered statelessly (400, ...); one naming no pair, or a pair's dialog with the wrong
tags, 481; a CSeq not above the last, 500 (§12.2.2); an offer (re-INVITE, UPDATE) while
the other side's is pending, 491, while the same side's is, 500 with Retry-After (§14.2);
an extension required other than `timer`, 420; a method the pair does not relay, 405.

Session timers (RFC 4028, `session_timer`): leg B's INVITE offers one; a caller's
Session-Expires below our Min-SE is answered 422; each leg's refresh and expiry are
deadlines of `expire` like the transactions'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from services.edge.b2bua.headers import relayed_headers
from services.edge.b2bua.legs import TARGET_REFRESH, Leg, PairAddress, callers_leg, targets_leg
from services.edge.b2bua.pair import Pair, Relay, Side
from services.edge.b2bua.record import from_record, record_timers, to_record
from services.edge.b2bua.session_timer import TimerPolicy, session_expires
from services.edge.b2bua.transfer import Transferring
from shared.sip.branch import new_call_id, new_tag
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import error_response
from shared.sip.timers import TimerSettings
from shared.sip.transaction import ClientTransaction, Send, ServerTransaction, State
from shared.sip.transport.destination import Destination, response_destination

ALLOW: Final = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO"
RELAYED_METHODS: Final = frozenset({"INVITE", "UPDATE", "INFO", "BYE"})
"""In-dialog requests carried to the other leg (BYE ends both instead of crossing)."""
RETRY_AFTER: Final = (("Retry-After", "2"),)  # a side's second offer's 500: §14.2, 0 to 10 s


@dataclass(frozen=True, slots=True)
class PairTarget:
    """Where leg B goes: its Request-URI, and the address its INVITE is sent to."""

    uri: str
    destination: Destination


@dataclass(frozen=True, slots=True)
class Originate:
    """The caller's INVITE `request` (pair `pair_id`) needs a target: answer with
    `B2bua.originate(pair_id, target, now)` or `B2bua.refuse(pair_id, status, now)`."""

    pair_id: str
    request: Request


Action = Send | Originate


class B2bua(Transferring):
    """One worker's B2BUA: feed it messages and time, carry out the actions it returns."""

    def __init__(
        self,
        edge: PairAddress,
        settings: TimerSettings | None = None,
        call_ids: Callable[[], str] = new_call_id,
        policy: TimerPolicy | None = None,
    ) -> None:
        """`call_ids` makes leg B's Call-IDs (an edge worker's: ones that hash to it);
        `policy` is the session timers' (`session_timer`)."""
        super().__init__(edge, settings, policy)
        self._call_ids = call_ids
        self.next_target: Callable[[str], PairTarget | None] | None = None
        """The adapter's next target for a pair whose leg B got 503 or 408 (None: no more,
        the caller gets that answer): serial failover over the route's gateways."""
        self._waiting: dict[str, tuple[ServerTransaction, Leg]] = {}
        """Caller's INVITEs waiting for `originate`, by pair id."""

    # ----- inputs ----------------------------------------------------------------------

    def receive(self, data: bytes, source: Destination, now: float) -> list[Action]:
        """One message from the network."""
        sends: list[Send] = []
        try:
            message = parse_message(data, stream=source.reliable)
        except SipError as error:
            _refuse_unparsed(data, error, source, sends)
            return list(sends)
        try:
            if isinstance(message, Response):
                self._response(message, now, sends)
                return list(sends)
            return self._request(message, source, now, sends)
        except SipError as error:  # a header the matching reads is malformed
            if isinstance(message, Request) and message.method != "ACK":
                _refuse_unparsed(data, error, source, sends)
            return list(sends)

    def originate(self, pair_id: str, target: PairTarget, now: float) -> list[Action]:
        """Send leg B's INVITE for the caller's INVITE of `pair_id` toward `target`."""
        sends: list[Send] = []
        waiting = self._waiting.pop(pair_id, None)
        if waiting is None:
            return []
        server, caller = waiting
        if server.state is not State.PROCEEDING:
            return []  # cancelled meanwhile
        invite = server.request
        try:
            target_leg = targets_leg(invite, target.uri, target.destination, self._call_ids())
        except SipError:  # a target URI too long to keep: the route's, not the caller's fault
            reason = "Bad Gateway (target unusable)"
            self._answer(server, 502, reason, now, sends, to_tag=caller.local_tag)
            return list(sends)
        pair = Pair(pair_id, caller, target_leg, now)
        self._hold(pair)
        pair.offering = "a"
        self._invite_b(Relay(pair, "a", server, creating=True), now, sends)
        return list(sends)

    def _invite_b(
        self, relay: Relay, now: float, sends: list[Send], interval: int | None = None
    ) -> None:
        """Leg B's INVITE, from the caller's, out toward leg B's peer, offering the session
        timer (`interval` seconds: the policy's unless a 422 asked for more)."""
        invite = relay.server.request
        headers = relayed_headers(invite) + self.timers.policy.offer(interval)
        request = relay.pair.b.request("INVITE", self.edge, headers, invite.body)
        forwards = invite.max_forwards
        request.set_header("Max-Forwards", str(69 if forwards is None else forwards - 1))
        self._relay(relay, request, now, sends)

    def _fail_over(self, relay: Relay, now: float, actions: list[Send]) -> bool:
        """Leg B anew (Call-ID, tag, CSeq 1) toward the adapter's next target, if it has one
        and the caller has not cancelled; the caller's leg is untouched."""
        pair = relay.pair
        if relay.cancelled or self.next_target is None:
            return False
        target = self.next_target(pair.id)
        if target is None:
            return False
        try:
            leg = targets_leg(
                relay.server.request, target.uri, target.destination, self._call_ids()
            )
        except SipError:  # a target URI too long to keep: as good as none
            return False
        self._dialogs.pop((pair.b.call_id, pair.b.local_tag), None)
        pair.b = leg
        self._dialogs[(leg.call_id, leg.local_tag)] = (pair, "b")
        self._invite_b(relay, now, actions)
        return True

    def _retry_422(self, relay: Relay, response: Response, now: float, sends: list[Send]) -> bool:
        """Leg B's INVITE asked again with the larger interval its 422 names (RFC 4028 §7.3),
        once: a 422 to an interval already that large goes to the caller."""
        client = relay.client
        asked = None if client is None else session_expires(client.request)
        wanted = self.timers.retry_interval(response)
        if relay.cancelled or asked is None or wanted is None or wanted <= asked[0]:
            return False
        self._invite_b(relay, now, sends, wanted)
        return True

    def refuse(self, pair_id: str, status: int, now: float, *retry: str) -> list[Action]:
        """The caller's INVITE of `pair_id` has no target: answer it `status` (Retry-After)."""
        sends: list[Send] = []
        if (waiting := self._waiting.pop(pair_id, None)) and waiting[0].state is State.PROCEEDING:
            tag, headers = waiting[1].local_tag, [("Retry-After", r) for r in retry]
            self._answer(waiting[0], status, None, now, sends, to_tag=tag, headers=headers)
        return list(sends)

    def hang_up(self, pair_id: str, now: float) -> list[Action]:
        """End the answered pair `pair_id` from the edge (call control): a BYE on each leg,
        with that leg's next CSeq, route set and target; the call's step `ended`, by the
        edge.  Nothing for a pair unknown, unanswered or ended."""
        sends: list[Send] = []
        pair = self.pairs.get(pair_id)
        if pair is None or pair.answered is None:
            return []
        self._end(pair, now)
        self.notes.note(pair, "ended", 200, by_edge=True)
        self._send_own(pair, "a", "BYE", now, sends)
        self._send_own(pair, "b", "BYE", now, sends)
        return list(sends)

    def next_deadline(self) -> float | None:
        table, sessions = self.table.next_deadline(), self.timers.next_deadline()
        if table is None or sessions is None:
            return sessions if table is None else table
        return min(table, sessions)

    def expire(self, now: float) -> list[Action]:
        """Fire the transaction and session timers due at `now`."""
        sends: list[Send] = []
        self._sessions_due(now, sends)
        for transaction, event in self.table.expire(now):
            if isinstance(transaction, ServerTransaction):
                self._server_event(transaction, event, now, sends)
            elif isinstance(transaction, ClientTransaction):
                self._client_event(transaction, event, now, sends)
        return list(sends)

    def holds(self, client: ClientTransaction) -> bool:
        """Whether `client` is one of this engine's (its adapter shares a sender with others)."""
        return client in self._relays

    def transport_failed(self, client: ClientTransaction, now: float) -> list[Action]:
        """A message of `client` could not be sent (connect refused, no route to host)."""
        sends: list[Send] = []
        for event in client.transport_error():
            self._client_event(client, event, now, sends)
        return list(sends)

    # ----- the state record ------------------------------------------------------------

    def record(self, pair_id: str) -> dict[str, str] | None:
        """The answered pair's state record (`record`), or None (unknown, unanswered, ended)."""
        pair = self.pairs.get(pair_id)
        if pair is None or pair.answered is None:
            return None
        return to_record(pair, self.timers.kept(pair_id))

    def adopt(self, record: Mapping[str, str], now: float = 0.0) -> Pair:
        """Continue the answered pair `record` describes (another edge's, say), its session
        timers from `now`; raises `record.RecordError` for a record that describes none."""
        pair, timers = from_record(record), record_timers(record)
        self._hold(pair)
        self.timers.adopt(pair.id, timers, now)
        return pair

    # ----- intake ----------------------------------------------------------------------

    def _response(self, response: Response, now: float, sends: list[Send]) -> None:
        """A response for one of our client transactions; one that does not parse whole
        is dropped as if lost (its sender retransmits, or the transaction times out)."""
        response.validate()
        client = self.table.match_response(response)
        if client is not None:  # else a stray: no transaction of ours sent its request
            for event in client.receive_response(response, now):
                self._client_event(client, event, now, sends)
            if client.answered:  # its ACKs and re-INVITEs read the request's CSeq again
                client.request.forget_parsed()

    def _request(
        self, request: Request, source: Destination, now: float, sends: list[Send]
    ) -> list[Action]:
        server = self.table.match_request(request)
        if server is not None:  # a retransmission, or the ACK of a non-2xx
            for event in server.receive_request(request, now):
                self._server_event(server, event, now, sends)
            return list(sends)
        if request.method == "ACK":
            self._ack(request, sends)
            return list(sends)
        request.validate()
        destination = response_destination(request.top_via, source.address, source.connection_id)
        try:
            server = self.table.create_server(request, destination)
        except ValueError:  # an RFC 2543 key (no branch cookie) taken, by another To tag
            raise SipError("Bad Request (its RFC 2543 transaction key is in use)") from None
        actions: list[Action] = []
        try:
            _check_extensions(request)
            if request.method in TARGET_REFRESH:
                self.timers.check(request)
            if request.method == "CANCEL":
                self._cancel(request, server, now, sends)
            elif request.to_tag is None:
                actions.extend(self._new_call(request, server, source, now, sends))
            elif not self._target_request(request, server, source, now, sends):
                self._in_dialog(request, server, source, now, sends)
        except SipError as error:
            self._answer(server, error.status, error.reason, now, sends, headers=error.headers)
        return [*sends, *actions]

    def _new_call(
        self,
        request: Request,
        server: ServerTransaction,
        source: Destination,
        now: float,
        sends: list[Send],
    ) -> list[Action]:
        if request.method != "INVITE":
            raise SipError("Method Not Allowed (outside a call)", 405, (("Allow", ALLOW),))
        forwards = request.max_forwards
        if forwards is not None and forwards <= 0:
            raise SipError("Too Many Hops", 483)
        caller = callers_leg(request, source)
        self._answer(server, 100, None, now, sends, to_tag=caller.local_tag)
        pair_id = new_tag()
        self._waiting[pair_id] = (server, caller)
        return [Originate(pair_id, request)]

    def _in_dialog(
        self,
        request: Request,
        server: ServerTransaction,
        source: Destination,
        now: float,
        sends: list[Send],
    ) -> None:
        pair, side = self._pair_of(request)
        method = request.method
        if method not in RELAYED_METHODS:
            raise SipError("Method Not Allowed (in a B2BUA call)", 405, (("Allow", ALLOW),))
        leg = pair.leg(side)
        leg.accept(request, source)
        if method in TARGET_REFRESH and pair.offering is not None:
            if pair.offering == side:
                raise SipError("Server Internal Error (your offer is pending)", 500, RETRY_AFTER)
            raise SipError("Request Pending", 491)
        if method == "BYE":
            if pair.answered is None:  # the caller CANCELs an unanswered call
                raise SipError("Call/Transaction Does Not Exist (not answered)", 481)
            self._answer(server, 200, None, now, sends)
            self._end(pair, now)
            self.notes.note(pair, "ended", 200, side=side)
            self._send_own(pair, pair.other(side), "BYE", now, sends)
            return
        if method == "INVITE":
            self._answer(server, 100, None, now, sends)
        if method in TARGET_REFRESH:
            leg.refresh(request)
            pair.offering = side
        other = pair.other(side)
        headers = relayed_headers(request)
        if method in TARGET_REFRESH:
            headers += self.timers.requesting(pair.id, other)
        out = pair.leg(other).request(method, self.edge, headers, request.body)
        self._relay(Relay(pair, side, server), out, now, sends)

    def _pair_of(self, request: Request) -> tuple[Pair, Side]:
        found = self._dialogs.get((request.call_id, request.to_tag or ""))
        if found is None:
            raise SipError("Call/Transaction Does Not Exist", 481)
        return found

    def _cancel(
        self, request: Request, server: ServerTransaction, now: float, sends: list[Send]
    ) -> None:
        """CANCEL (§9.2): 200 to it; if its INVITE is unanswered, 487 to that and the
        relayed INVITE cancelled (or, while the target is being chosen, never sent)."""
        invite = self.table.match_cancel(request)
        if invite is None:
            raise SipError("Call/Transaction Does Not Exist", 481)
        relay = self._serving.get(invite)
        tag = relay.pair.leg(relay.inbound).local_tag if relay is not None else None
        self._answer(server, 200, None, now, sends, to_tag=tag)
        if invite.state is not State.PROCEEDING:
            return
        self._answer(invite, 487, None, now, sends, to_tag=tag)
        if relay is None:
            return
        relay.cancelled = True
        if relay.creating:
            self._end(relay.pair, now)
            self.notes.note(relay.pair, "cancelled")
        relay.pair.offering = None
        self._cancel_out(relay, now, sends)

    def _ack(self, ack: Request, sends: list[Send]) -> None:
        """An ACK for a 2xx of ours (its own transaction, §13.2.2.4): the ACK out.  One
        that does not parse whole is dropped (its sender sends it again on our 2xx)."""
        ack.validate()
        found = self._dialogs.get((ack.call_id, ack.to_tag or ""))
        if found is None:
            return
        pair, side = found
        if ack.from_tag != pair.leg(side).remote_tag:
            return
        relay = self._unacked.get((pair.id, side, ack.cseq.seq))
        if relay is not None:
            self._acked(relay, ack, sends)


def _check_extensions(request: Request) -> None:
    """The engine supports one extension, session timers (RFC 4028); any other required
    is refused with 420 (§8.2.2.3)."""
    if request.method in ("CANCEL", "ACK"):
        return
    names = (name.strip() for value in request.headers("require") for name in value.split(","))
    if required := [name for name in names if name.lower() != "timer"]:
        unsupported = (("Unsupported", ", ".join(required)),)
        raise SipError("Bad Extension", 420, unsupported)


def _refuse_unparsed(data: bytes, error: SipError, source: Destination, sends: list[Send]) -> None:
    """A stateless answer (400, ...) to what could not be parsed, back where it came from."""
    answer = error_response(data, error)
    if answer is not None:
        sends.append(Send(answer, source))
