"""The worker's B2BUA engine beside its proxy: what the proxy hands it, and its targets.

One `B2bua` per worker (docs/b2bua.md). The proxy routes a new INVITE as for any call
(authentication, limits, fraud, the routing rule and its gateways' addresses from the
edge's caches) and, when the first hop's `mode` is `b2bua` (its gateway's, else its
rule's: `shared.routing_table.modes`), hands it over with those hops
(`HandOff`): the engine answers the caller and its `Originate` is answered here with the
first hop, its `next_target` (leg B refused with 503 or timed out) with the next. From
then on every message naming one of the pair's Call-IDs (the caller's, and leg B's, which
the engine makes to hash to this worker: `runtime.affinity` hands a message to the worker
its Call-ID hashes to) is handed over before the proxy reads it.

When a pair ends, the call's limit leases are released as a proxied call's BYE releases
them; its Call-IDs stay claimed for `LINGER` seconds more, so late retransmissions and
the answers to its BYEs still reach the engine's transactions.

With a `PairWriter` (`runtime.b2bua_state`), an answered pair's record goes to Redis each
time a message changes it and is deleted when it ends; and the proxy hands over an
in-dialog request naming a pair's tag (`PAIR_TAG`) that no Call-ID here claims: its
record is loaded (another edge's call, that edge gone) and adopted before the engine
reads it, or, with none, the engine answers it 481.

With call events on, the engine's steps of each call (`Progress`) go out as the call's
events (`runtime.b2bua_events`), among the sends it returns (`runtime.b2bua_media`: SDP).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Final

from redis.exceptions import RedisError

from services.edge.b2bua.engine import B2bua, Originate, PairTarget
from services.edge.b2bua.legs import PAIR_TAG, PairAddress
from services.edge.b2bua.record import RecordError
from services.edge.b2bua.session_timer import TimerPolicy
from services.edge.proxy.actions import HandOff, Publish, Send
from services.edge.proxy.core import Proxy
from services.edge.proxy.routes import Hop
from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.b2bua_call_ids import owned_call_ids
from services.edge.runtime.b2bua_events import PairEvents
from services.edge.runtime.b2bua_media import PairMedia
from services.edge.runtime.b2bua_state import PairWriter
from services.edge.runtime.transfer_targets import is_number, number_target, uri_target
from shared.sip.message import Request, Response, parse_message, peek_call_id
from shared.sip.transaction import ClientTransaction

log = logging.getLogger("callmesh.edge.b2bua")

LINGER: Final = 32.0
"""Seconds a pair's Call-IDs stay the engine's after it ended (64 T1: its transactions')."""
MAX_ADOPTING: Final = 100
"""Redis look-ups for unknown pairs in flight at most: past it (a flood of forged pair
tags), a request goes to the engine unlooked-up and is answered 481 (its sender, if
genuine, retransmits)."""
MERGED: Final = 482
"""A second INVITE outside a dialog under a live pair's Call-ID: a merged request (§8.2.2.2)."""


class B2buaRunner:
    """Carries the proxy's hand-offs to the engine and the engine's sends back out."""

    def __init__(
        self,
        proxy: Proxy,
        group: WorkerGroup | None = None,
        writer: PairWriter | None = None,
        policy: TimerPolicy | None = None,
    ) -> None:
        """`policy`: the session timers' (`CALLMESH_B2BUA_SESSION_EXPIRES`, ...)."""
        interface = proxy.interfaces.outbound("udp", "127.0.0.1")  # the first IPv4 UDP one
        self.engine = B2bua(
            PairAddress(interface.host, interface.port),
            proxy.timers.transaction_settings(),
            call_ids=owned_call_ids(group),
            policy=policy,
        )
        self._proxy = proxy
        self._group = group
        self.calls: dict[str, str] = {}
        """Each live or lingering pair's Call-IDs (A's and B's) → its pair id."""
        self._ended: deque[tuple[float, str]] = deque()
        """(when its Call-IDs are let go, pair id) of the pairs ended, in that order."""
        self._pair_calls: dict[str, tuple[str, ...]] = {}
        """Pair id → its Call-IDs, the caller's first (the one the proxy's limits know)."""
        proxy.b2bua_calls = self.calls
        proxy.b2bua_claims = self.claims
        self.call_ended: Callable[[str], None] = proxy.policies.call_ended
        """Frees a call's limit slots (the policies'), given the caller's Call-ID."""
        self._callers: dict[str, tuple[str, int]] = {}
        """Each pair's caller Call-ID → the caller's From tag and its INVITE's CSeq."""
        self._ended_ids: set[str] = set()
        """The pairs ended whose Call-IDs linger."""
        self._writer = writer
        self._saved: dict[str, dict[str, str]] = {}
        """Pair id → the record last written for it."""
        self._adopting: set[asyncio.Task[None]] = set()
        self._hops: dict[str, list[Hop]] = {}
        """Pair id → the hops of its route not tried yet (failover on 503, 408)."""
        self._retargeted: list[str] = []
        """Pairs whose leg B was just begun anew: its new Call-ID to claim."""
        self.engine.next_target = self._next_target
        events = proxy.call_events
        self._events = PairEvents(events) if events is not None else None
        if writer is not None:
            proxy.b2bua_tags = PAIR_TAG
        self.media = PairMedia(self.calls, self.engine.pairs, self.engine.transfers)

    def media_reply(self, ticket: int, sdp: bytes | None, now: float) -> list[Send | Publish]:
        """rtpengine's SDP for `ticket` (None: failed): what it held, or the caller's offer's."""
        if (pair_id := self.media.originated(ticket)) is None:
            return self.media.done(ticket, sdp)  # sends rewritten already
        originate, hand_off = self.media.offering.pop(pair_id)
        if self.media.offered(ticket, sdp) or not self.media.required:
            return self._note_ends(self._originate(originate, hand_off, now), now)
        sends: list[Send | Publish] = []
        retry = str(self.media.retry_after)  # as the proxy's 503 of a required relay
        sends += (s for s in self.engine.refuse(pair_id, 503, now, retry) if isinstance(s, Send))
        self._pair_ended(pair_id, now)
        if self._events is not None and sends:
            reason = "Service Unavailable (media relay)"
            sends.append(self._events.refused(originate.request, 503, reason, now, "unavailable"))
        return self._note_ends(sends, now)

    def claims(self, message: Request | Response) -> bool:
        """Whether a message under a pair's Call-ID is the pair's.  Leg B's Call-IDs are
        ours; the caller's is the caller's choice, so a message under it is the pair's only
        with the caller's tag in From or To (another caller using that Call-ID is proxied),
        and a new INVITE of the caller once the pair ended (its retry after a 407, a 3xx or
        a 422 of the far end: another CSeq) is a new call, not a merged request."""
        caller = self._callers.get(message.call_id)
        if caller is None:
            return True
        tag, cseq = caller
        if tag not in (message.from_tag, message.to_tag):
            return False
        if (
            isinstance(message, Request)
            and message.method == "INVITE"
            and message.to_tag is None
            and message.cseq.seq != cseq
        ):
            return self.calls.get(message.call_id) not in self._ended_ids
        return True

    def hand_off(self, hand_off: HandOff, now: float) -> list[Send | Publish]:
        """Run one handed-over message through the engine; its sends, in order, and events."""
        sends: list[Send | Publish] = []
        originated = False
        for action in self.engine.receive(hand_off.data, hand_off.source, now):
            if isinstance(action, Originate):
                originated = True
                sends += self._originate(action, hand_off, now)
            else:
                sends.append(action)
        if hand_off.hops and not originated and self._events is not None:
            sends += self._events.refused_at_intake(hand_off.data, sends, now)
        self._claim_retargeted()
        if self._writer is not None:
            call_id = peek_call_id(hand_off.data)
            pair_id = None if call_id is None else self.calls.get(call_id.decode(errors="replace"))
            if pair_id is not None:
                self._save(pair_id)
        return self._note_ends(sends, now)

    def adopt(self, hand_off: HandOff, deliver: Callable[[list[Send | Publish]], None]) -> None:
        """A request naming a pair's tag that no Call-ID here claims: its record is loaded and
        adopted first (`deliver` gets the engine's sends)."""
        if len(self._adopting) >= MAX_ADOPTING:
            deliver(self.hand_off(hand_off, asyncio.get_running_loop().time()))
            return
        task = asyncio.get_running_loop().create_task(self._adopt(hand_off, deliver))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _adopt(
        self, hand_off: HandOff, deliver: Callable[[list[Send | Publish]], None]
    ) -> None:
        message = parse_message(hand_off.data)  # parsed by the proxy already: it parses
        await self._load(message.call_id, message.to_tag or "")
        now = asyncio.get_running_loop().time()
        deliver(self.hand_off(HandOff(hand_off.data, hand_off.source), now))

    async def hang_up(
        self, call_id: str, tag: str, deliver: Callable[[list[Send | Publish]], None]
    ) -> bool:
        """End the answered B2BUA call whose caller's Call-ID is `call_id` (`tag`: the edge's on
        the caller's leg) from the engine, which holds its dialogs: a BYE on each leg, the
        record ending `by_edge`.  Its pair held here, or held by no worker of this edge (its
        edge gone): loaded from Redis and adopted first.  False: no such pair here, or it is
        another worker's (its Call-ID hashes there, `runtime.affinity`)."""
        group = self._group
        if group is not None and group.owner(call_id.encode()) != group.index:
            return False
        if call_id not in self.calls:
            await self._load(call_id, tag)
        pair = self.engine.pairs.get(self.calls.get(call_id, ""))
        if pair is None or pair.answered is None or pair.a.local_tag != tag:
            return False
        now = asyncio.get_running_loop().time()
        sends = self.engine.hang_up(pair.id, now)
        deliver(self._note_ends([s for s in sends if isinstance(s, Send)], now))
        return True

    async def transfer(
        self, call_id: str, tag: str, to: str, deliver: Callable[[list[Send | Publish]], None]
    ) -> tuple[str, str]:
        """Begin moving the answered B2BUA call (`call_id`, the edge's `tag` on the caller's
        leg) to `to` (`runtime.transfer_targets`), held here or adopted from Redis as for
        `hang_up`: ("", the new leg's Call-ID), or (why not, ""): `elsewhere` (another
        worker's, or nowhere), a `b2bua.transfer.Refusal`; `TransferTargetError` for a target
        with no route or no use.  Its outcome is an event (`edge.call.transferred`)."""
        group = self._group
        if group is not None and group.owner(call_id.encode()) != group.index:
            return "elsewhere", ""
        if call_id not in self.calls:
            await self._load(call_id, tag)
        pair = self.engine.pairs.get(self.calls.get(call_id, ""))
        if pair is None or pair.a.local_tag != tag:
            return "elsewhere", ""
        now = asyncio.get_running_loop().time()
        router = self._proxy.router
        target = number_target(router, to, pair.a.peer, now) if is_number(to) else uri_target(to)
        refused, sends = self.engine.start_transfer(pair.id, target.uri, target.destination, now)
        if refused is not None:
            return refused, ""
        leg = self.engine.transfers[pair.id].leg.call_id
        self.calls[leg] = pair.id
        self._pair_calls[pair.id] += (leg,)
        deliver(self._note_ends(list(sends), now))
        return "", leg

    async def _load(self, call_id: str, tag: str) -> None:
        """The pair of the dialog (`call_id`, the edge's `tag`) from Redis, adopted if found."""
        record = None
        if self._writer is not None:
            try:
                record = await self._writer.states.load(call_id, tag)
            except (RedisError, OSError) as error:
                log.warning("B2BUA state of %s not read: %s", call_id[:64], error)
        if record is not None and call_id not in self.calls:
            try:
                pair = self.engine.adopt(record, asyncio.get_running_loop().time())
            except RecordError as error:
                log.warning("B2BUA state of %s unusable: %s", call_id[:64], error)
            else:
                self.calls[pair.a.call_id] = self.calls[pair.b.call_id] = pair.id
                self._pair_calls[pair.id] = (pair.a.call_id, pair.b.call_id)
                self._saved[pair.id] = dict(record)
                self.media.adopted(pair, record)  # relayed: its SDP and its end go to rtpengine

    def _save(self, pair_id: str) -> None:
        record = self.media.record(pair_id, self.engine.record(pair_id))  # relayed: says so
        if record is not None and record != (saved := self._saved.get(pair_id)) and self._writer:
            if saved is not None and saved["b_call_id"] != record["b_call_id"]:
                self._writer.delete(saved)  # a transfer's old leg B: its dialog's key goes too
            self._saved[pair_id] = record
            self._writer.save(record)

    async def stop(self) -> None:
        for task in list(self._adopting):
            task.cancel()
        await asyncio.gather(*self._adopting, return_exceptions=True)
        if self._writer is not None:
            await self._writer.stop()

    def _originate(
        self, originate: Originate, hand_off: HandOff, now: float
    ) -> list[Send | Publish]:
        pair_id = originate.pair_id
        caller = originate.request.call_id
        live = self.calls.get(caller)  # this pair's own, back from rtpengine's offer
        if not hand_off.hops or (live not in (None, pair_id) and live not in self._ended_ids):
            # An INVITE without To tag under a live pair's Call-ID (another caller's: one
            # Call-ID is one pair here); a pair ended lets the caller's retry be a new call.
            refused: list[Send | Publish] = [
                s for s in self.engine.refuse(pair_id, MERGED, now) if isinstance(s, Send)
            ]
            return refused
        self.calls[caller] = pair_id
        self._callers[caller] = (originate.request.from_tag or "", originate.request.cseq.seq)
        self._pair_calls[pair_id] = (caller,)
        hop, *rest = hand_off.hops
        self._hops[pair_id] = rest
        if hop.relay and self.media.offer(pair_id, originate, hand_off):
            return []  # leg B's INVITE waits for rtpengine's offer (`media_reply`)
        target = PairTarget(hop.uri, hop.destination)
        if self._events is not None:
            self._events.trying(pair_id, hop)
        sends: list[Send | Publish] = [
            s for s in self.engine.originate(pair_id, target, now) if isinstance(s, Send)
        ]
        pair = self.engine.pairs.get(pair_id)
        if pair is not None:
            self.calls[pair.b.call_id] = pair_id
            self._pair_calls[pair_id] = (caller, pair.b.call_id)
            return sends
        self._pair_ended(pair_id, now)  # refused at once (502: a target it cannot keep)
        if self._events is not None and sends:
            reason = "Bad Gateway (target unusable)"
            sends.append(self._events.refused(originate.request, 502, reason, now, "unavailable"))
        return sends

    def _next_target(self, pair_id: str) -> PairTarget | None:
        hops = self._hops.get(pair_id)
        if not hops:
            return None
        hop = hops.pop(0)
        self._retargeted.append(pair_id)
        if self._events is not None:
            self._events.trying(pair_id, hop)
        return PairTarget(hop.uri, hop.destination)

    def _claim_retargeted(self) -> None:
        """The new leg B Call-IDs of the pairs failed over (the old ones linger with the pair)."""
        for pair_id in self._retargeted:
            pair = self.engine.pairs.get(pair_id)
            if pair is not None:
                self.calls[pair.b.call_id] = pair_id
                self._pair_calls[pair_id] += (pair.b.call_id,)
        self._retargeted.clear()

    def holds(self, client: ClientTransaction) -> bool:
        return self.engine.holds(client)

    def transport_failed(self, client: ClientTransaction, now: float) -> list[Send | Publish]:
        sends = self.engine.transport_failed(client, now)
        self._claim_retargeted()
        return self._note_ends([s for s in sends if isinstance(s, Send)], now)

    def next_deadline(self) -> float | None:
        """The engine's next timer, or when an ended pair's Call-IDs are let go."""
        if not self.calls:
            return None
        deadline = self.engine.next_deadline()
        if self._ended:
            release = self._ended[0][0]
            deadline = release if deadline is None else min(deadline, release)
        return deadline

    def expire(self, now: float) -> list[Send | Publish]:
        sends = self.engine.expire(now)
        self._claim_retargeted()
        out = self._note_ends([s for s in sends if isinstance(s, Send)], now)
        ended = self._ended
        while ended and ended[0][0] <= now:
            self._let_go(ended.popleft()[1])
        return out

    def _note_ends(self, sends: list[Send | Publish], now: float) -> list[Send | Publish]:
        """`sends` and the events of the engine's steps since; the pairs ended, freed."""
        if self._events is not None and self.engine.progress:
            sends += self._events.published(self.engine.progress, now)
        self.engine.progress.clear()  # call events off: nothing to report
        ended = self.engine.ended
        for pair_id in ended:
            self._pair_ended(pair_id, now)
        ended.clear()
        return self.media.outgoing(sends)

    def _pair_ended(self, pair_id: str, now: float) -> None:
        """The call is over: its limit leases freed (as a proxied call's BYE frees them), its
        state deleted, its Call-IDs lingering."""
        self._ended.append((now + LINGER, pair_id))
        self._ended_ids.add(pair_id)
        self._hops.pop(pair_id, None)
        self.media.end(pair_id)
        call_ids = self._pair_calls.get(pair_id, ())
        if call_ids:
            self.call_ended(call_ids[0])
        saved = self._saved.pop(pair_id, None)
        if saved is not None and self._writer is not None:
            self._writer.delete(saved)

    def _let_go(self, pair_id: str) -> None:
        self._ended_ids.discard(pair_id)
        if self._events is not None:
            self._events.forget(pair_id)
        for call_id in self._pair_calls.pop(pair_id, ()):
            if self.calls.get(call_id) == pair_id:  # not a new pair's since (the caller's retry)
                del self.calls[call_id]
                self._callers.pop(call_id, None)
