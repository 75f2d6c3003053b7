"""B2BUA calls' media through rtpengine: the SDP crossing a pair, rewritten around the engine.

A pair whose first hop the proxy's policy relays (`MediaRelaying._relayed_hops`, asked at
the hand-off, so `media_relay`, the subscriber domains and `CALLMESH_MEDIA_RELAY` decide as
for a proxied call) has a `PairSession`.  The caller's INVITE with SDP is offered to
rtpengine before leg B's INVITE is sent (the runner holds the engine's `Originate`
meanwhile, as the proxy holds a request for rtpengine): rtpengine failing, the caller gets
503 if `CALLMESH_MEDIA_RELAY_REQUIRED`, else the call goes on unrelayed.  From then on
every message the engine sends on the pair's legs passes through `PairMedia.outgoing`: one
with SDP is held, rewritten by rtpengine's `offer` or `answer`, and sent; the pair's
later messages wait behind it (order kept).  rtpengine names parties by tag: the caller
by its From tag, the far end by leg B's remote tag, in one session under the caller's
Call-ID; an offer goes with its author's tag first, an answer with the offerer's.  Which
SDP is an offer: a request's (INVITE, UPDATE, or an ACK's answer to a late offer), else a
response's unless the request it answers carried the offer (an INVITE without SDP: its
answer's SDP is the offer, the ACK's the answer).  rtpengine failing mid-call, the SDP goes
as it came (counted, as the proxy does).  A transfer keeps the session: leg C's offer (its
2xx) is rtpengine's `offer` from C's tag to the caller's before the re-INVITE carries it, the
caller's answer its `answer` before C's ACK does (C is side B from the re-INVITE on); leg
B's party is left to rtpengine, replaced.  The session is deleted when the pair ends (any
way: BYE, failure, cancel, session timer, hang-up; docs/b2bua.md, "Media").  A relayed
pair's state record says so (`record.MEDIA_FIELD`): an edge adopting it relays it too.

Why around the engine's sends and not inside it: the engine is sans-IO and knows SDP only as
bytes it carries; its retransmissions (leg B's INVITE, the 2xx to A) re-send the bytes it
built.  Rewriting its sends here keeps it untouched, and each rewrite is remembered by
(command, author, SDP) until the next offer: a retransmission, a failover's INVITE to the
next gateway (the same offer) and a 2xx sent again get the same rewrite at once, with no
second round trip, as the proxy reuses an answer's rewrite; an offer that is new (a hold, its
unhold) clears them, so rtpengine sees every exchange that changes the session.  Only the
first offer needs the engine's cooperation (a 503 instead of leg B's INVITE), and it has it
already: its `Originate` is a round trip the runner holds.  The other design, the engine
emitting "needs rtpengine" and taking the body back, would hold relays at each of its
sends (the INVITE, each response, the ACK, the transfer's re-INVITE) in a module at its
size limit, for the same outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

from services.edge import metrics
from services.edge.b2bua.engine import Originate
from services.edge.b2bua.pair import Pair, Side
from services.edge.b2bua.record import MEDIA_FIELD, MEDIA_RELAYED, relayed
from services.edge.b2bua.transfer import Transfer
from services.edge.proxy.actions import HandOff, Media, Publish, Send
from services.edge.proxy.media import message_sdp, put_sdp
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message, peek_call_id

log = logging.getLogger("callmesh.edge.b2bua")

REWRITES_KEPT: Final = 16
"""Rewrites remembered per pair (for retransmissions): past it, forgotten all at once."""

Out = Send | Publish
Key = tuple[str, Side, bytes]
"""(command, the SDP's author, the SDP) of a rewrite."""


@dataclass(slots=True)
class PairSession:
    """A relayed pair's rtpengine session: whose offer is outstanding (None: an offer in an
    answer expected), the rewrites made, and the messages waiting behind one."""

    call_id: str
    """The caller's Call-ID: rtpengine's name of the call."""
    relayed: bool = True
    """False: rtpengine did not take the caller's offer, the call goes on unrelayed."""
    offerer: Side | None = None
    rewrites: dict[Key, bytes] = field(default_factory=dict)
    queue: list[Out] | None = None
    """None: nothing held; else the pair's messages sent after the one rtpengine has."""
    ending: bool = False
    """The pair ended while a rewrite was out: deleted once it is back."""


class PairMedia:
    """The relayed pairs' sessions: what to ask rtpengine (`ask`), and the sends rewritten.

    `calls` and `pairs` are the runner's (a Call-ID's pair id) and its engine's (live pairs),
    `transfers` the engine's transfers in flight.
    """

    def __init__(
        self,
        calls: Mapping[str, str],
        pairs: Mapping[str, Pair],
        transfers: Mapping[str, Transfer] | None = None,
    ) -> None:
        self.required = False
        """`CALLMESH_MEDIA_RELAY_REQUIRED`: rtpengine refusing a caller's offer, 503."""
        self.retry_after = 30
        """Seconds in that 503's Retry-After (the proxy's `MediaSettings.retry_after`)."""
        self.ask: Callable[[Media], None] | None = None
        """Runs a command against rtpengine (`relay_media`); None: no rtpengine, no relay."""
        self.sessions: dict[str, PairSession] = {}
        self.offering: dict[str, tuple[Originate, HandOff]] = {}
        """Pair id → its caller's INVITE and hand-off, while rtpengine takes its offer."""
        self._calls = calls
        self._pairs = pairs
        self._transfers: Mapping[str, Transfer] = {} if transfers is None else transfers
        self._tickets = 0
        self._held: dict[int, tuple[str, Key, Send | None]] = {}
        """Ticket → (pair id, the rewrite's key, the message held; None: leg B's INVITE)."""

    def offer(self, pair: str, originate: Originate, hand_off: HandOff) -> bool:
        """The caller's INVITE of a pair its first hop relays: True if its SDP went to rtpengine
        (the runner holds the hand-off till `offered`), False without SDP (the offer comes in
        B's answer), without rtpengine, or once decided."""
        if self.ask is None or pair in self.sessions:
            return False
        request = originate.request
        session = self.sessions[pair] = PairSession(request.call_id)
        sdp = message_sdp(request)
        if sdp is None:
            return False
        self.offering[pair] = (originate, hand_off)
        session.offerer = "a"
        session.queue = []
        self._media(pair, ("offer", "a", sdp), request.from_tag or "", None, None)
        return True

    def originated(self, ticket: int) -> str | None:
        """The pair whose caller's offer `ticket` is, else None (`done` takes it)."""
        held = self._held.get(ticket)
        return held[0] if held is not None and held[2] is None else None

    def offered(self, ticket: int, sdp: bytes | None) -> bool:
        """The caller's offer back: True if rewritten (leg B's INVITE gets rtpengine's SDP)."""
        pair_id, key, _held = self._held.pop(ticket)
        session = self.sessions[pair_id]
        session.queue = None
        if sdp is None:  # the call is refused, or goes on unrelayed
            metrics.MEDIA_FAILURES["offer", "rejected" if self.required else "unrelayed"] += 1
            log.warning("rtpengine offer for B2BUA call %s failed", session.call_id[:64])
            session.relayed = False
            return False
        metrics.MEDIA_RELAYED_CALLS.value += 1
        _remember(session, key, sdp)
        return True

    def outgoing(self, sends: list[Out]) -> list[Out]:
        """The engine's `sends` with the relayed pairs' SDP rewritten; those held for
        rtpengine (and those behind them) come out of `done`."""
        if not self.sessions:
            return sends
        out: list[Out] = []
        for send in sends:
            if isinstance(send, Send) and (pair := self._relayed(send)) is not None:
                self._pass(pair, send, out)
            else:
                out.append(send)
        return out

    def done(self, ticket: int, sdp: bytes | None) -> list[Out]:
        """rtpengine's SDP for `ticket` (None: it failed): the held message and those behind."""
        pair_id, key, held = self._held.pop(ticket)
        session = self.sessions.get(pair_id)
        if session is None:
            return []
        out: list[Out] = []
        if sdp is None:
            metrics.MEDIA_FAILURES[key[0], "unrelayed"] += 1
            log.warning("rtpengine %s for B2BUA call %s failed", key[0], session.call_id[:64])
            sdp = key[2]
        _remember(session, key, sdp)
        if held is not None:
            out.append(_rewritten(held, sdp))
        queued, session.queue = session.queue or [], None
        pair = self._pair(session.call_id)
        for send in queued:  # each held again if it brings SDP of its own, the rest behind it
            if pair is None or pair.id != pair_id or not isinstance(send, Send):
                out.append(send)  # the pair ended meanwhile: nothing more to rewrite
            else:
                self._pass(pair, send, out)
        if session.ending and session.queue is None:
            self.end(pair_id)
        return out

    def record(self, pair_id: str, record: dict[str, str] | None) -> dict[str, str] | None:
        """The pair's state `record` (None: none), saying so if the pair is relayed."""
        session = self.sessions.get(pair_id)
        if record is not None and session is not None and session.relayed:
            record[MEDIA_FIELD] = MEDIA_RELAYED
        return record

    def adopted(self, pair: Pair, record: Mapping[str, str]) -> None:
        """A pair adopted from Redis: relayed again if its `record` says it was (rtpengine's
        session, the caller's Call-ID, goes on), so its later SDP goes through rtpengine and
        its end deletes the session."""
        if not relayed(record) or pair.id in self.sessions:
            return
        if self.ask is None:  # rtpengine's own timeout will end its session
            log.warning("B2BUA call %s relayed, no rtpengine here", pair.a.call_id[:64])
            return
        self.sessions[pair.id] = PairSession(pair.a.call_id)

    def end(self, pair_id: str) -> None:
        """The pair ended (or its media left rtpengine): its session deleted, once a rewrite
        out is back."""
        session = self.sessions.get(pair_id)
        if session is None:
            return
        if session.queue is not None:
            session.ending = True
            return
        del self.sessions[pair_id]
        if session.relayed and self.ask is not None:
            self.ask(Media("delete", session.call_id, "", None, b"", 0))

    # -----------------------------------------------------------------------------------

    def _pass(self, pair: Pair, send: Send, out: list[Out]) -> None:
        """One of `pair`'s messages out: at once, rewritten, held, or queued."""
        session = self.sessions[pair.id]
        if session.queue is not None:
            session.queue.append(send)
            return
        if not session.relayed:
            out.append(send)
            return
        try:
            message = parse_message(send.data)
        except SipError:
            out.append(send)
            return
        if message.call_id not in (pair.a.call_id, pair.b.call_id):
            out.append(send)  # a transfer's new leg before it is the pair's (its INVITE, no
            return  # SDP; dropped: an ACK without SDP, a BYE), or the old leg B's BYE
        to: Side = "a" if message.call_id == pair.a.call_id else "b"
        author: Side = "b" if to == "a" else "a"
        command = _command(session, message, to, author)
        sdp = None if command is None else message_sdp(message)
        if command is None or sdp is None:
            out.append(send)
            return
        key: Key = (command, author, sdp)
        rewrite = session.rewrites.get(key)
        if rewrite is not None:
            out.append(_rewritten(send, rewrite))
            return
        if command == "offer":  # a new exchange: rtpengine must see its answer, and a
            session.rewrites.clear()  # past offer again (off hold) is news to it too
        offerer = author if command == "offer" else to
        first, second = self._tag(pair, offerer), self._tag(pair, "b" if offerer == "a" else "a")
        session.queue = []
        self._media(pair.id, key, first, second or None, send)

    def _tag(self, pair: Pair, side: Side) -> str:
        """rtpengine's name of a party: the tag it gave its own dialog (the caller's From tag,
        leg B's far end's To tag); while a transfer's re-INVITE carries C's offer to the
        caller, side B is leg C (B's own offers get 491 meanwhile)."""
        transfer = self._transfers.get(pair.id) if side == "b" else None
        leg = transfer.leg if transfer is not None and transfer.reinvite else pair.leg(side)
        return leg.remote_tag or ""

    def _pair(self, call_id: str) -> Pair | None:
        return self._pairs.get(self._calls.get(call_id, ""))

    def _relayed(self, send: Send) -> Pair | None:
        """The pair of a message the engine sends, if it has a session."""
        call_id = peek_call_id(send.data)
        pair = None if call_id is None else self._pair(call_id.decode(errors="replace"))
        return pair if pair is not None and pair.id in self.sessions else None

    def _media(
        self, pair: str, key: Key, from_tag: str, to_tag: str | None, held: Send | None
    ) -> None:
        self._tickets += 1
        self._held[self._tickets] = (pair, key, held)
        call_id = self.sessions[pair].call_id
        if self.ask is not None:
            self.ask(Media(key[0], call_id, from_tag, to_tag, key[2], self._tickets))


def _command(
    session: PairSession, message: Request | Response, to: Side, author: Side
) -> str | None:
    """`offer`, `answer` or None (no SDP exchange) for a message going to leg `to`; notes an
    offer's author (an INVITE without SDP: the offer comes in its answer)."""
    if isinstance(message, Request):
        if message.method == "ACK":
            return "answer" if session.offerer == to else None
        if message.method not in ("INVITE", "UPDATE"):
            return None
        if message_sdp(message) is None:
            if message.method == "INVITE":
                session.offerer = None
            return None
        session.offerer = author
        return "offer"
    if not 100 < message.status < 300 or message.cseq.method not in ("INVITE", "UPDATE"):
        return None
    if session.offerer == to:
        return "answer"
    if message_sdp(message) is not None:
        session.offerer = author
    return "offer"


def _remember(session: PairSession, key: Key, sdp: bytes) -> None:
    if len(session.rewrites) >= REWRITES_KEPT:
        session.rewrites.clear()
    session.rewrites[key] = sdp


def _rewritten(send: Send, sdp: bytes) -> Send:
    message = parse_message(send.data)
    message.set_body(put_sdp(message, sdp))
    return replace(send, data=message.to_bytes())


class Replies(Protocol):
    """What `relay_media` hands rtpengine's replies to (`B2buaRunner`)."""

    @property
    def media(self) -> PairMedia: ...

    def media_reply(self, ticket: int, sdp: bytes | None, now: float) -> list[Out]: ...


def relay_media(
    runner: Replies,
    required: bool,
    run: Callable[[Media], Awaitable[bytes | None]],
    deliver: Callable[[list[Out]], None],
    retry_after: int = 30,
) -> None:
    """Relay the media of `runner`'s pairs the proxy's policy relays: each command run as a task
    on the running loop (`run`: the edge's `MediaRunner.run`), its SDP given to the runner's
    `media_reply` and what that releases to `deliver` (`required`: the caller gets 503 when
    rtpengine cannot take the offer, with `Retry-After: retry_after`, as the proxy's)."""
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(media: Media) -> None:
        sdp = await run(media)
        if media.ticket:
            deliver(runner.media_reply(media.ticket, sdp, loop.time()))

    def ask(media: Media) -> None:
        task = loop.create_task(one(media))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    runner.media.required = required
    runner.media.retry_after = retry_after
    runner.media.ask = ask
