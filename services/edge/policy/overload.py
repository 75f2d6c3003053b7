"""Load shedding: refuse new calls while the loop lags or call events pile up; keep calls up.

Why: past its capacity a worker falls behind; responses then wait in the
socket buffer until failover timers fire, which adds CANCELs, second
gateways and failure events, i.e. more load: the edge collapses instead of
saturating.  Answering a new out-of-dialog INVITE with 503 + Retry-After is
cheap (no routing, no client transaction, no timers beyond the answer's own)
and tells a caller or upstream proxy to go elsewhere for a while (RFC 3261
§21.5.4), while ACKs, BYEs and re-INVITEs of established calls go on.

The signal is the loop lag the runtime's driver measures with a periodic probe. Not the
wait of datagrams in the sockets' buffers (measured beside it): an edge that completed
99.7 % of its calls at 2000 cps had them wait over a second in one probe in seven, and
shedding on that wait refused half of them.
Shedding starts only after `sustain` late probes in a row: a lone late probe
is a pause (a garbage collection walks ~100k objects in tens of ms at full
rate), not a backlog, and refusing calls for it turned a busy-but-coping
worker into one refusing two calls in three (measured at 2000 calls/s).  It
ends `hold` seconds after the last late probe, so it does not flap at every
probe near the threshold.

A second signal: the worker's call events waiting for the bus (the
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

Pure and synchronous: the caller passes the measured lag and its clock, or
the events waiting and their bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    lag_threshold: float = 0.1
    """Seconds of loop lag from which new calls are refused; 0 disables shedding."""
    sustain: int = 3
    """Late probes in a row that start shedding."""
    hold: float = 1.0
    """Seconds shedding lasts after the last probe that lagged."""
    retry_after: int = 5
    """Seconds put in the 503's Retry-After."""
    backlog_high: float = 0.5
    """Share of the event backlog's bound from which new calls are refused; 0 disables."""


class LoadShedder:
    """Whether to refuse new calls now (`shedding`), fed with the loop's lag and the events
    waiting."""

    def __init__(self, settings: OverloadSettings | None = None) -> None:
        self.settings = settings or OverloadSettings()
        self.shedding = False
        self.episodes = 0
        """Times a cause of shedding started (the lag, the backlog), even while the other
        held."""
        self.refused = 0
        self.retry_after = str(self.settings.retry_after)
        self.lagging = False
        """Shedding for the loop's lag (`observe`)."""
        self.backlogged = False
        """Shedding for the events waiting (`observe_backlog`)."""
        self._until = 0.0
        self._late_in_a_row = 0

    def observe(self, lag: float, now: float) -> bool:
        """One probe's lag at `now`; returns True when this starts a lag episode."""
        threshold = self.settings.lag_threshold
        started = False
        if threshold > 0 and lag >= threshold:
            self._late_in_a_row += 1
            self._until = now + self.settings.hold
            if not self.lagging and self._late_in_a_row >= self.settings.sustain:
                self.lagging = started = True
        else:
            self._late_in_a_row = 0
            if self.lagging and now >= self._until:
                self.lagging = False
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
        self.shedding = self.lagging or self.backlogged
        if started:
            self.episodes += 1
