"""The edge's own session refreshes (RFC 4028 §7.4, §9, §10): UPDATE or re-INVITE.

Where the edge is a leg's refresher (`session_timer`), at half the interval it sends:

- an UPDATE without a body when the leg's peer allows UPDATE (its last Allow named it,
  `Leg.update`): no offer, so no glare with the media's re-INVITEs (§10);
- else a re-INVITE offering again the SDP the edge last sent on that leg (`Leg.sdp`), byte
  for byte: RFC 3264 §8 lets an unchanged offer keep its `o=` version, and the versions a
  peer sees stay those of the far side, whose SDP the pair relays (an edge's increment would
  collide with that side's next one).  Its 2xx is ACKed (again on each retransmission) and
  its answer stays on that leg: a refresh, not a change of media;
- no SDP known (a pair adopted from its record, a call without any): an UPDATE all the same.

An UPDATE answered 405 or 501 goes again as a re-INVITE at once (the peer does not allow
UPDATE after all: noted for the leg's next refreshes); with no SDP to offer, the edge stops
timing that leg (its peer's own timer, if any, still ends a dead session) rather than end
a live call at its expiry.  A re-INVITE meeting an offer crossing
the pair, or answered 491 (glare), is tried again once after §14.1's random delay (2.1 to 4 s on
leg B, whose Call-ID is the edge's; 0 to 2 s on leg A), unless the leg expires first.  While
it is out the pair has an offer pending (`Pair.offering`, the other side's as for a
transfer's): the leg's peer's own offer gets 491.  A 2xx restarts the leg's interval; a
timeout, 408 or 481 ends the call at once (§10); any other answer leaves it to the leg's
expiry: a BYE on both legs.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Final

from services.edge.b2bua.legs import PairAddress
from services.edge.b2bua.pair import Pair, Side
from services.edge.b2bua.relaying import Relaying
from services.edge.b2bua.session_timer import TimerPolicy
from shared.sip.errors import SipError
from shared.sip.message import Response
from shared.sip.timers import TimerSettings
from shared.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    Send,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransportFailed,
)

log = logging.getLogger("callmesh.edge.b2bua")

FALLBACK: Final = frozenset({405, 501})
"""Answers to an UPDATE refresh that make it a re-INVITE (the method is not allowed)."""
GLARE_DELAY: Final = {"b": (2.1, 4.0), "a": (0.0, 2.0)}
"""RFC 3261 §14.1's wait before a re-INVITE answered 491 goes again, by leg: the edge
made leg B's Call-ID (and a transfer's leg C's, which takes B's place), the caller A's."""


@dataclass(slots=True, eq=False)
class Refresh:
    """One session refresh of the edge's in flight: its leg, method, and (a re-INVITE's
    2xx taken) the ACK sent, sent again for each retransmission of that 2xx."""

    pair: Pair
    side: Side
    method: str
    answered: bool = False
    ack: bytes | None = None


class Refreshing(Relaying):
    """The session refreshes of the engine's pairs (see the module docstring)."""

    def __init__(
        self,
        edge: PairAddress,
        settings: TimerSettings | None = None,
        policy: TimerPolicy | None = None,
    ) -> None:
        super().__init__(edge, settings, policy)
        self._refreshes: dict[ClientTransaction, Refresh] = {}
        """The edge's own session refreshes in flight: their answers matter."""
        self.glare = random.Random()
        """Draws §14.1's delays (seedable in tests)."""

    def _sessions_due(self, now: float, actions: list[Send]) -> None:
        """The session timers due: a refresh of a leg the edge refreshes, or the call
        ended where a leg went unrefreshed (RFC 4028 §10)."""
        for pair_id, side, refresh in self.timers.due(now):
            pair = self.pairs.get(pair_id)
            if pair is None:
                continue
            if refresh:
                leg = pair.leg(side)
                method = "UPDATE" if leg.update or not leg.sdp else "INVITE"
                self._refresh(pair, side, method, now, actions)
            else:
                log.info("B2BUA pair %s: leg %s's session expired", pair_id, side)
                self._session_over(pair, now, actions)

    def _refresh(
        self, pair: Pair, side: Side, method: str, now: float, actions: list[Send]
    ) -> None:
        leg = pair.leg(side)
        headers = self.timers.requesting(pair.id, side)
        body = b""
        if method == "INVITE":
            if pair.offering is not None:  # an offer crossing the pair: as good as a 491
                self._glare(pair, side, now)
                return
            pair.offering = pair.other(side)
            headers.append(("Content-Type", "application/sdp"))
            body = leg.sdp
        request = leg.request(method, self.edge, headers, body)
        client, events = self.table.start_client(request, leg.peer, now)
        self._refreshes[client] = Refresh(pair, side, method)
        actions.extend(event for event in events if isinstance(event, Send))

    def _glare(self, pair: Pair, side: Side, now: float) -> None:
        low, high = GLARE_DELAY[side]
        delay = round(self.glare.uniform(low, high), 2)  # in units of 10 ms (§14.1)
        if not self.timers.retry(pair.id, side, now + delay):
            log.info("B2BUA pair %s: leg %s's session refresh not retried", pair.id, side)

    def _client_event(
        self, client: ClientTransaction, event: TransactionEvent, now: float, actions: list[Send]
    ) -> None:
        refresh = self._refreshes.get(client)
        if refresh is None:
            super()._client_event(client, event, now, actions)
            return
        if isinstance(event, Send):
            actions.append(event)
            return
        if isinstance(event, Terminated):
            del self._refreshes[client]
            if not refresh.answered:
                self._settled(refresh)
            return
        if isinstance(event, (ResponseReceived, TimedOut)) and event.response is not None:
            response: Response | None = event.response
        elif isinstance(event, (TimedOut, TransportFailed)):
            response = None
        else:
            return
        if response is not None and response.status < 200:
            return
        if refresh.answered:  # a re-INVITE's 2xx again: our ACK was lost
            if refresh.ack is not None and response is not None and response.status < 300:
                actions.append(Send(refresh.ack, refresh.pair.leg(refresh.side).peer))
            return
        refresh.answered = True
        self._settled(refresh)
        self._refresh_answered(client, refresh, response, now, actions)

    def _refresh_answered(
        self,
        client: ClientTransaction,
        refresh: Refresh,
        response: Response | None,
        now: float,
        actions: list[Send],
    ) -> None:
        """A refresh's final answer (None: no answer, or it could not be sent)."""
        pair, side = refresh.pair, refresh.side
        leg = pair.leg(side)
        status = 408 if response is None else response.status
        if response is not None and status < 300:
            if refresh.method == "INVITE":
                refresh.ack = leg.request("ACK", self.edge, cseq=client.request.cseq.seq).to_bytes()
                actions.append(Send(refresh.ack, leg.peer))
            try:
                leg.answered(response)  # its Contact, the leg's remote target now
            except SipError as error:
                log.info("B2BUA pair %s: refresh's new target refused: %s", pair.id, error.reason)
            if pair.ended is None:
                self.timers.answered(pair.id, side, response, now)
            return
        if response is not None:
            leg.allowed(response)
        if status in (408, 481):
            log.info("B2BUA pair %s: leg %s's session refresh failed", pair.id, side)
            self._session_over(pair, now, actions)
        elif pair.ended is not None:
            return
        elif refresh.method == "UPDATE" and status in FALLBACK:
            leg.update = False
            if leg.sdp:
                self._refresh(pair, side, "INVITE", now, actions)
            else:  # nothing to offer (an adopted pair): the leg's timer is left to its peer
                log.info("B2BUA pair %s: leg %s's session timer dropped", pair.id, side)
                self.timers.legs.pop((pair.id, side), None)
        elif status == 491:
            self._glare(pair, side, now)

    def _settled(self, refresh: Refresh) -> None:
        """A refresh's re-INVITE answered (or gone): the pair's offer is no longer out."""
        pair = refresh.pair
        if refresh.method == "INVITE" and pair.offering == pair.other(refresh.side):
            pair.offering = None

    def _session_over(self, pair: Pair, now: float, actions: list[Send]) -> None:
        """A leg's session is dead: the call ends, with a BYE on both legs."""
        if pair.ended is None:
            self._end(pair, now)
            self._send_own(pair, "a", "BYE", now, actions)
            self._send_own(pair, "b", "BYE", now, actions)
