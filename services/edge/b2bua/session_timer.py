"""Session timers (RFC 4028) on each leg of a pair: negotiated, refreshed, expired.

Each leg is a dialog of its own, so each has its own session interval and refresher:
the edge offers `Supported: timer` and its `Session-Expires` on leg B's INVITE and takes
what the gateway's 2xx says (none: no timer on that leg, §7.2); on leg A it honours the
caller's `Session-Expires` (too small: 422 with `Min-SE`, §9) and refresher, and picks one
when the caller names none (the caller, if it supports timer; else the edge).  Every 2xx
to a target refresh on a leg restarts that leg's interval.

Where the edge is a leg's refresher it refreshes at half the interval: an UPDATE
without a body where the peer allows UPDATE, else a re-INVITE (`refreshing`); where that
transaction times out or is answered 408 or 481, or where a leg goes unrefreshed until
`min(32, interval/3)` before its expiry (§10), the call ends: a BYE on both legs.

This module keeps the legs' timers and their deadlines; the engine (`refreshing.Refreshing`)
carries them out.  A pair adopted from its state record gets the intervals and refreshers
the record holds (`adopt`), but no time: each edge's clock is its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from services.edge.b2bua.pair import Side
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.params import param_value, parse_params
from shared.sip.values import parse_delta_seconds

RFC_MIN_SE: Final = 90
"""The smallest session interval RFC 4028 allows anyone to ask for (§4)."""
MAX_INTERVAL: Final = 86_400
"""A longer Session-Expires is taken as this one: a timer must fire within a day."""


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """The edge's session timer settings (`CALLMESH_B2BUA_SESSION_EXPIRES`, `..._MIN_SE`).

    `scale` shrinks the intervals on the engine's clock only (the headers keep the RFC's
    values): `CALLMESH_B2BUA_SESSION_TIMER_SCALE`, for tests, as the fraud window's.
    """

    session_expires: int = 1800
    min_se: int = RFC_MIN_SE
    scale: float = 1.0

    @property
    def interval(self) -> int:
        """The interval the edge asks for and grants at most: never below its own Min-SE."""
        return max(self.session_expires, self.min_se)

    def offer(self, interval: int | None = None) -> list[tuple[str, str]]:
        """The headers of a session-creating INVITE the edge sends (leg B's)."""
        seconds = max(interval or self.interval, self.min_se)
        return [
            ("Supported", "timer"),
            ("Session-Expires", f"{seconds};refresher=uac"),
            ("Min-SE", str(self.min_se)),
        ]


@dataclass(slots=True)
class LegTimer:
    """One leg's session timer: `interval` seconds as negotiated, who refreshes, and when
    the last 2xx to a refresh came (on the engine's clock)."""

    interval: int
    edge_refreshes: bool
    refreshed: float
    refresh_sent: bool = False
    retried: bool = False
    """Its refresh met glare and was set to go again (once per interval)."""
    due: float = 0.0

    def header(self, *, edge_is_uac: bool) -> str:
        """`Session-Expires` for a message of the edge's in a transaction where the edge is
        the UAC (`edge_is_uac`) or the UAS: the refresher named relative to it."""
        refresher = "uac" if self.edge_refreshes == edge_is_uac else "uas"
        return f"{self.interval};refresher={refresher}"


def session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    """A message's `Session-Expires` as (seconds, refresher or None), None without one;
    `SipError` 400 for one that does not read (§4's grammar)."""
    values = message.headers("session-expires")
    if not values:
        return None
    delta, _, params = values[0].partition(";")
    seconds = parse_delta_seconds(delta.strip(), "Session-Expires")
    found = param_value(
        parse_params(";" + params if params else "", "Session-Expires"), "refresher"
    )
    refresher = None if found is None else found.lower()
    if refresher not in (None, "uac", "uas"):
        raise SipError("Bad Request (Session-Expires refresher)")
    return min(seconds, MAX_INTERVAL), refresher


def min_se(message: Request | Response) -> int:
    """A message's `Min-SE` (90 without one or below it); 400 for one that does not read."""
    values = message.headers("min-se")
    if not values:
        return RFC_MIN_SE
    delta = parse_delta_seconds(values[0].partition(";")[0].strip(), "Min-SE")
    return max(min(delta, MAX_INTERVAL), RFC_MIN_SE)


def supports_timer(message: Request | Response) -> bool:
    names = ",".join(message.headers("supported") + message.headers("require"))
    return "timer" in (name.strip().lower() for name in names.split(","))


@dataclass(slots=True)
class SessionTimers:
    """The pairs' leg timers and their deadlines (a heap; stale entries are skipped)."""

    policy: TimerPolicy = field(default_factory=TimerPolicy)
    legs: dict[tuple[str, Side], LegTimer] = field(default_factory=dict)
    _heap: list[tuple[float, str, Side]] = field(default_factory=list)

    def check(self, request: Request) -> None:
        """A request's `Session-Expires` below our Min-SE: 422 naming it (§9); either
        header unreadable: 400."""
        min_se(request)
        asked = session_expires(request)
        if asked is not None and asked[0] < self.policy.min_se:
            minimum = (("Min-SE", str(self.policy.min_se)),)
            raise SipError("Session Interval Too Small", 422, minimum)

    def retry_interval(self, response: Response) -> int | None:
        """A 422 to the edge's INVITE: the interval to ask again with, None if not higher
        than what was asked (§7.3: retried once)."""
        wanted = min_se(response)
        return wanted if wanted > self.policy.interval else None

    def answered(self, pair_id: str, side: Side, response: Response, now: float) -> None:
        """A 2xx to the edge's INVITE or UPDATE on `side`: the interval and refresher it
        names, or (none named) no timer on that leg (§7.2)."""
        try:
            named = session_expires(response)
        except SipError:  # unreadable: as good as none
            named = None
        if named is None:
            self.legs.pop((pair_id, side), None)
            return
        interval = max(named[0], self.policy.min_se)
        self._start(pair_id, side, LegTimer(interval, named[1] != "uas", now))

    def answering(
        self, pair_id: str, side: Side, request: Request, now: float
    ) -> list[tuple[str, str]]:
        """The edge's 2xx to `request` (INVITE or UPDATE from `side`): the leg's timer from
        what it asked (or kept from before), and the headers saying so."""
        current = self.legs.get((pair_id, side))
        asked = session_expires(request)
        supported = supports_timer(request)
        if asked is not None:
            interval = max(min(asked[0], self.policy.interval), min_se(request))
            refresher = asked[1] or ("uac" if supported else "uas")
            timer = LegTimer(interval, refresher == "uas", now)
        elif current is not None:
            timer = LegTimer(current.interval, current.edge_refreshes, now)
        elif supported:  # the UAS may start one (§9): the caller refreshes
            timer = LegTimer(self.policy.interval, False, now)
        else:
            return []
        if not supported:
            timer.edge_refreshes = True  # a peer without timer cannot be the refresher
        self._start(pair_id, side, timer)
        headers = [("Supported", "timer"), ("Session-Expires", timer.header(edge_is_uac=False))]
        if not timer.edge_refreshes:
            headers.append(("Require", "timer"))  # the UAC must refresh (§9)
        return headers

    def requesting(self, pair_id: str, side: Side) -> list[tuple[str, str]]:
        """The headers of an INVITE or UPDATE the edge sends on `side` (relayed or its own)."""
        timer = self.legs.get((pair_id, side))
        if timer is None:
            return []
        return [
            ("Supported", "timer"),
            ("Session-Expires", timer.header(edge_is_uac=True)),
            ("Min-SE", str(self.policy.min_se)),
        ]

    def retry(self, pair_id: str, side: Side, at: float) -> bool:
        """The edge's refresh of a leg to go again at `at` (after a glare, once): False when
        the leg has no timer, was retried already, or expires before `at`."""
        timer = self.legs.get((pair_id, side))
        if timer is None or timer.retried or not timer.refresh_sent or at >= timer.due:
            return False
        timer.retried, timer.refresh_sent, timer.due = True, False, at
        heapq.heappush(self._heap, (at, pair_id, side))
        return True

    def kept(self, pair_id: str) -> dict[Side, tuple[int, bool]]:
        """A pair's leg timers for its record: (interval, whether the edge refreshes)."""
        sides: tuple[Side, Side] = ("a", "b")
        legs = ((side, self.legs.get((pair_id, side))) for side in sides)
        return {side: (t.interval, t.edge_refreshes) for side, t in legs if t is not None}

    def adopt(self, pair_id: str, kept: Mapping[Side, tuple[int, bool]], now: float) -> None:
        """The leg timers of a pair adopted from its record (`kept`), which holds no time: a
        leg the edge refreshes is refreshed at once (its last refresh may be half an interval
        old), one its peer refreshes expires as if refreshed `now`."""
        for side, (interval, edge_refreshes) in kept.items():
            since = interval / 2 * self.policy.scale if edge_refreshes else 0.0
            self._start(pair_id, side, LegTimer(interval, edge_refreshes, now - since))

    def forget(self, pair_id: str) -> None:
        self.legs.pop((pair_id, "a"), None)
        self.legs.pop((pair_id, "b"), None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[tuple[str, Side, bool]]:
        """The legs whose time came: (pair id, side, whether to refresh; else to end)."""
        fired: list[tuple[str, Side, bool]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._stale(entry):
                continue
            _, pair_id, side = entry
            timer = self.legs[(pair_id, side)]
            if timer.edge_refreshes and not timer.refresh_sent:
                timer.refresh_sent = True
                self._schedule(pair_id, side, timer)  # the expiry, should no 2xx come
                fired.append((pair_id, side, True))
            else:
                self.legs.pop((pair_id, side))
                fired.append((pair_id, side, False))
        return fired

    def _start(self, pair_id: str, side: Side, timer: LegTimer) -> None:
        self.legs[(pair_id, side)] = timer
        self._schedule(pair_id, side, timer)

    def _schedule(self, pair_id: str, side: Side, timer: LegTimer) -> None:
        """The refresh at half the interval (the edge refreshing), else the expiry:
        `min(32, interval/3)` before the interval ends (§10)."""
        interval = timer.interval
        if timer.edge_refreshes and not timer.refresh_sent:
            after = interval / 2
        else:
            after = interval - min(32, interval / 3)
        timer.due = timer.refreshed + after * self.policy.scale
        heapq.heappush(self._heap, (timer.due, pair_id, side))

    def _stale(self, entry: tuple[float, str, Side]) -> bool:
        timer = self.legs.get((entry[1], entry[2]))
        return timer is None or timer.due != entry[0]
