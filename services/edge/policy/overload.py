"""Load shedding: refuse new calls while the worker falls behind or call events pile up; keep
calls up.

Why: past its capacity a worker falls behind; responses then wait in the
socket buffer until failover timers fire, which adds CANCELs, second
gateways and failure events, i.e. more load: the edge collapses instead of
saturating.  Answering a new out-of-dialog INVITE with 503 + Retry-After is
cheap (no routing, no client transaction, no timers beyond the answer's own)
and tells a caller or upstream proxy to go elsewhere for a while (RFC 3261
§21.5.4), while ACKs, BYEs and re-INVITEs of established calls go on.

Two signals say the worker is behind, each measured by the runtime's periodic probe:

- the loop's lag: how late it ran the probe;
- a standing queue in its sockets' buffers: the shortest wait of the datagrams one socket
  gave in a probe's interval (CoDel's signal, RFC 8289).  A loop reading full bursts runs
  its timers on time while its sockets hold seconds of work: at 2000 calls/s on two shared
  cores such an edge stopped completing calls after 28 s and its lag crossed the threshold
  only at 46 s.  The longest wait does not tell this apart from coping: a burst, or a
  collection's pause, leaves a few datagrams waiting long in an edge that keeps up (one probe
  in seven over a second in a run that completed 99.7 % of its calls, and shedding on it
  refused half of them).  The shortest wait stays high only while even the datagrams just
  arrived wait, i.e. while the queue does not drain between bursts.

Shedding on either starts only after `sustain` probes in a row over its threshold: a lone
late probe is a pause (a garbage collection walks ~100k objects in tens of ms at full
rate), not a backlog, and refusing calls for it turned a busy-but-coping worker into one
refusing two calls in three (measured at 2000 calls/s).  For the lag it ends `hold` seconds
after the last late probe, so it does not flap at every probe near the threshold: a probe
on time may come between two stalls.  For the queue it ends at the first probe under the
threshold: the queue itself says it drained, and refused calls drain it within a probe or
two.  An edge at its capacity (4000 calls/s here) keeps a queue of tens of ms, and a pause
pushes it over the threshold for a few probes: held a second, that refused 1.0-5.3 % of
the calls in three runs, where three runs not shedding on the queue failed 0, 0 and 1.1 %.

A third signal: the worker's call events waiting for the bus (the
publisher's backlog).  Past its bound an event is dropped, and with it a
call record: a call given away, whose international minutes the operator
still pays its carrier for.  A 45 s run at 3000 calls/s on two shared cores
filled that backlog while the loop ran its timers on time, and dropped
134,574 events (docs/benchmarks.md).  So from `backlog_high` of the bound new
calls are refused, until the backlog is back under half of that: the calls
already up keep producing their events (answers, ends), and the other half
of the bound holds them.  A broker away long enough fills the backlog too:
then the edge refuses new calls rather than carry calls it could not bill,
and a caller or upstream proxy takes them elsewhere (Retry-After).

Pure and synchronous: the caller passes the measured lag or wait and its clock, or
the events waiting and their bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    lag_threshold: float = 0.1
    """Seconds of loop lag from which new calls are refused; 0 disables."""
    queue_threshold: float = 0.2
    """Seconds every datagram a socket gave in a probe's interval waited in its buffer (the
    shortest wait) from which new calls are refused; 0 disables."""
    sustain: int = 3
    """Probes in a row over a threshold that start shedding."""
    hold: float = 1.0
    """Seconds shedding for the lag lasts after the last late probe."""
    retry_after: int = 5
    """Seconds put in the 503's Retry-After."""
    backlog_high: float = 0.5
    """Share of the event backlog's bound from which new calls are refused; 0 disables."""


class _Sustained:
    """A probed signal over its threshold: active from `sustain` probes over it in a row
    until `hold` seconds after the last (0: until the first probe under it).  One rule for
    the lag and the queue, so that they start alike and are counted apart (a late probe and
    a queued one alternating are neither in a row)."""

    __slots__ = ("_hold", "_over_in_a_row", "_sustain", "_threshold", "_until", "active")

    def __init__(self, threshold: float, sustain: int, hold: float) -> None:
        self._threshold = threshold
        self._sustain = sustain
        self._hold = hold
        self.active = False
        self._over_in_a_row = 0
        self._until = 0.0

    def observe(self, value: float, now: float) -> bool:
        """Returns True when this probe makes it active; a threshold of 0 never does."""
        if self._threshold > 0 and value >= self._threshold:
            self._over_in_a_row += 1
            self._until = now + self._hold
            if not self.active and self._over_in_a_row >= self._sustain:
                self.active = True
                return True
        else:
            self._over_in_a_row = 0
            if self.active and now >= self._until:
                self.active = False
        return False


class LoadShedder:
    """Whether to refuse new calls now (`shedding`), fed with the loop's lag, the sockets'
    standing queue and the events waiting."""

    def __init__(self, settings: OverloadSettings | None = None) -> None:
        self.settings = settings or OverloadSettings()
        self.shedding = False
        self.episodes = 0
        """Times a cause of shedding started (the lag, the queue, the backlog), even while
        another held."""
        self.refused = 0
        self.retry_after = str(self.settings.retry_after)
        self.backlogged = False
        """Shedding for the events waiting (`observe_backlog`)."""
        settings = self.settings
        self._lag = _Sustained(settings.lag_threshold, settings.sustain, settings.hold)
        self._queue = _Sustained(settings.queue_threshold, settings.sustain, hold=0.0)

    @property
    def lagging(self) -> bool:
        """Shedding for the loop's lag (`observe`)."""
        return self._lag.active

    @property
    def queued(self) -> bool:
        """Shedding for a standing queue in the sockets' buffers (`observe_queue`)."""
        return self._queue.active

    def observe(self, lag: float, now: float) -> bool:
        """One probe's lag at `now`; returns True when this starts a lag episode."""
        started = self._lag.observe(lag, now)
        self._update(started)
        return started

    def observe_queue(self, shortest_wait: float, now: float) -> bool:
        """The shortest wait of the datagrams a socket gave since the last probe (the
        longest such among the sockets; 0 for a socket that gave none); returns True when
        this starts a queue episode."""
        started = self._queue.observe(shortest_wait, now)
        self._update(started)
        return started

    def observe_backlog(self, waiting: int, bound: int) -> bool:
        """The events waiting for the bus, of `bound` at most; returns True when this starts
        a backlog episode.  It ends once fewer than half the high mark wait."""
        high = self.settings.backlog_high * bound
        started = False
        if high <= 0:
            self.backlogged = False
        elif waiting >= high:
            started = not self.backlogged
            self.backlogged = True
        elif waiting < high / 2:
            self.backlogged = False
        self._update(started)
        return started

    def _update(self, started: bool) -> None:
        self.shedding = self._lag.active or self._queue.active or self.backlogged
        if started:
            self.episodes += 1
