"""The worker's periodic probe: how late the event loop runs, and the housekeeping due with it.

Every `LOOP_PROBE_INTERVAL` the probe measures how late the loop ran it and how long
datagrams waited in the sockets' buffers, and feeds the proxy's `LoadShedder`, which
refuses new calls while the loop lags, while a queue stands in a socket's buffer or while
the publisher's backlog of call events is high; it
also flushes the merged failure reports, keeps the core's wall-clock offset
and the gauges current, and starts a refresh of the DNS answers due (ahead of
their expiry, so calls to a busy name never wait for DNS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from services.edge import metrics
from services.edge.policy.failure_reports import FailureReports
from services.edge.proxy.core import Proxy
from services.edge.runtime.publisher import EventPublisher
from shared.clock import wall_offset
from shared.dns.resolver import DnsResolver
from shared.sip.transport.base import LogThrottle, unlogged_note

log = logging.getLogger("callmesh.edge")

DNS_CHECK_INTERVAL = 0.25
"""How often the probe looks for DNS answers due for refresh (a scan of the cache). A TTL
of a few seconds or more is refreshed long before it runs out; at the 1 s floor a call
may now and then find its answer expired and wait for it."""
LOOP_PROBE_INTERVAL = 0.1
"""Short enough that shedding starts within a fraction of a second of the loop falling behind."""
SHEDDING_CAUSES = ("event loop", "socket queue", "call events")
"""As the shedder's `lagging`, `queued` and `backlogged`, named in the log."""


def set_wall_offset(proxy: Proxy, loop: asyncio.AbstractEventLoop) -> None:
    """Nonces and call events carry wall time; the core runs on the loop's clock, which
    the call events also read to stamp an answer when its 2xx is sent."""
    offset = wall_offset(loop.time)
    if proxy.subscribers is not None:
        proxy.subscribers.wall_offset = offset
    if proxy.call_events is not None:
        proxy.call_events.wall_offset = offset
        proxy.call_events.clock = loop.time


class LoopProbe:
    """One worker's probe; `background` runs the DNS refresh as a task the driver owns."""

    def __init__(
        self,
        proxy: Proxy,
        dns: DnsResolver,
        publisher: EventPublisher,
        reports: FailureReports,
        background: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._proxy = proxy
        self._dns = dns
        self._publisher = publisher
        self._reports = reports
        self._background = background
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._refreshing = False
        self._dns_check_at = 0.0
        self._refused_counted = 0
        self._throttle = LogThrottle()
        self.receive_wait: Callable[[], float] = lambda: 0.0
        """The longest a datagram waited in a socket's buffer since the last probe
        (`EdgeSockets.take_longest_wait`, set once the sockets are open): a loop reading
        full bursts runs its timers on time while its sockets hold seconds of work."""
        self.standing_wait: Callable[[], float] = lambda: 0.0
        """The shortest a datagram waited in a socket's buffer since the last probe, the
        longest such among the sockets (`EdgeSockets.take_standing_wait`): what the
        shedder reads, where the longest wait would count a burst as a backlog."""

    def start(self) -> None:
        set_wall_offset(self._proxy, self._loop)
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _schedule(self) -> None:
        self._due = self._loop.time() + LOOP_PROBE_INTERVAL
        self._handle = self._loop.call_at(self._due, self._on_probe)

    def _on_probe(self) -> None:
        now = self._loop.time()
        lag = max(0.0, now - self._due)
        metrics.LOOP_LAG.observe(lag)
        metrics.RECEIVE_WAIT.observe(self.receive_wait())
        standing = self.standing_wait()
        metrics.RECEIVE_QUEUE.observe(standing)
        self._watch_load(lag, standing, now)
        for event in self._reports.flush(now):
            self._publisher.offer(event)
        metrics.EVENTS_WAITING.value = self._publisher.waiting
        set_wall_offset(self._proxy, self._loop)
        for kind, count in self._proxy.table.counts().items():
            metrics.TRANSACTIONS[kind] = count
        if now >= self._dns_check_at and not self._refreshing:
            self._dns_check_at = now + DNS_CHECK_INTERVAL
            due = self._dns.cache.next_due()
            if due is not None and due <= now:
                self._refreshing = True
                self._background(self._refresh_dns())
        self._schedule()

    def _start_line(self, cause: str, lag: float, standing: float) -> str:
        if cause == "event loop":
            return (
                f"event loop {lag * 1000:.0f} ms late: refusing new calls (503) until it catches up"
            )
        if cause == "socket queue":
            return (
                f"a queue stands in a socket's buffer (every datagram it gave in the last"
                f" {LOOP_PROBE_INTERVAL * 1000:.0f} ms waited {standing * 1000:.0f} ms or more):"
                " refusing new calls (503) until it drains"
            )
        publisher = self._publisher
        return (
            f"{publisher.waiting} call events waiting for the bus (of {publisher.max_backlog}"
            " at most): refusing new calls (503) until they are out"
        )

    def _log(self, reason: str, line: str, now: float) -> None:
        unlogged = self._throttle.due(reason, now)
        if unlogged is not None:
            log.warning("%s%s", line, unlogged_note(unlogged))

    async def _refresh_dns(self) -> None:
        try:
            await self._dns.refresh()
        finally:
            self._refreshing = False

    def _watch_load(self, lag: float, standing: float, now: float) -> None:
        """The three causes of shedding (the loop's lag, a queue standing in a socket's
        buffer, the call events waiting for the bus) are all observed before any is logged,
        so that a cause ending is not logged as calls accepted again in the probe where
        another starts.  Their lines are throttled per cause and edge (start or end): a
        worker held at its capacity starts and ends shedding on the queue every second or
        so, which would be a line each time."""
        shedder = self._proxy.shedder
        if shedder is None:
            return
        publisher = self._publisher
        before = (shedder.lagging, shedder.queued, shedder.backlogged)
        started = (
            shedder.observe(lag, now),
            shedder.observe_queue(standing, now),
            shedder.observe_backlog(publisher.waiting, publisher.max_backlog),
        )
        after = (shedder.lagging, shedder.queued, shedder.backlogged)
        causes = zip(SHEDDING_CAUSES, started, before, after, strict=True)
        for cause, start, was_on, is_on in causes:
            if start:
                self._log(f"{cause} started", self._start_line(cause, lag, standing), now)
            elif was_on and not is_on:
                then = (
                    "still refusing new calls" if shedder.shedding else "accepting new calls again"
                )
                line = f"{cause} caught up: {then} ({shedder.refused} refused so far)"
                self._log(f"{cause} ended", line, now)
        metrics.SHEDDING.value = 1 if shedder.shedding else 0
        if shedder.refused > self._refused_counted:
            metrics.CALLS_REFUSED.value += shedder.refused - self._refused_counted
            self._refused_counted = shedder.refused
