"""The transaction timers' queue at a loaded worker's size: its work per call.

Why apart from `proxy_core`: that bench moves its clock 1 ms a call and runs a few hundred
calls, so its queue holds a few thousand timers, where a worker at 1,000 calls a second
holds some 100,000 live ones (three of 32 s a call) and the cancelled ones not yet reached.
At that size the cost is in memory, not in instructions (`shared.sip.timers.TimerQueue`,
[benchmarks](../docs/benchmarks.md)). Each call here sets the timers the proxy sets for an
answered call with a BYE, at 1 ms a call: three cancelled once answered (a retransmission,
Timer C, the failover time), two of 64*T1 (the INVITE's two transactions), one more
cancelled (the BYE's retransmission), T4 (the BYE's client) and 64*T1 (its server); then
seven `next_deadline` (the worker asks after every message) and one `pop_due`.  After
`--warm-up` calls (40 s of them: the steady state), it times `--calls` calls, `--repeat`
times, and prints the median µs per call and the live timers.

`--lag-ms` times each message up to that many milliseconds before the clock, at random:
the edge times a datagram by its kernel arrival, and its sockets' queues lag unevenly, so
the `now` it schedules by goes back and forth by as much.  Every timer draws its lag, 0 by
default: a cost the figures from before the option did not include (on one machine, both
ways measured 13-21 µs a call, within the runs' noise).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time

from shared.sip.timers import TimerQueue, TimerSettings

STEP = 0.001
"""Seconds between calls: 1,000 calls a second, one worker's share at 2,000."""
QUERIES = 7
"""`next_deadline` asked per call: once per message of the call."""


class TimerLoad:
    """A queue and the clock that drives it, one call at a time."""

    def __init__(self, settings: TimerSettings, lag_s: float = 0.0) -> None:
        self.queue: TimerQueue[int] = TimerQueue()
        self.settings = settings
        self.now = 0.0
        rng = random.Random(1)
        self._lags = itertools.cycle([rng.uniform(0.0, lag_s) for _ in range(4096)])
        """Each message's lag behind the clock, drawn once (not timed) and cycled."""

    def call(self) -> None:
        queue, now, settings, lags = self.queue, self.now + STEP, self.settings, self._lags
        self.now = now
        long = settings.transaction_timeout
        for delay in (settings.t1, settings.timer_c, 30.0):
            queue.cancel(queue.schedule(now - next(lags), delay, 0))
        queue.schedule(now - next(lags), long, 1)
        queue.schedule(now - next(lags), long, 2)
        queue.cancel(queue.schedule(now - next(lags), settings.t1, 3))
        queue.schedule(now - next(lags), settings.t4, 4)
        queue.schedule(now - next(lags), long, 5)
        for _ in range(QUERIES):
            queue.next_deadline()
        queue.pop_due(now)


def measure(warm_up: int, calls: int, lag_s: float = 0.0) -> tuple[float, int]:
    """µs per call over `calls` after `warm_up`, and the live timers at the end."""
    load = TimerLoad(TimerSettings(), lag_s)
    for _ in range(warm_up):
        load.call()
    start = time.perf_counter()
    for _ in range(calls):
        load.call()
    return (time.perf_counter() - start) / calls * 1e6, len(load.queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warm-up", type=int, default=40_000, help="calls before timing")
    parser.add_argument("--calls", type=int, default=100_000, help="calls timed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--lag-ms", type=float, default=0.0, help="each message timed up to this before the clock"
    )
    args = parser.parse_args()
    if not 0 <= args.lag_ms < 1000:
        parser.error("--lag-ms must be at least 0 and under 1000")
    runs = [measure(args.warm_up, args.calls, args.lag_ms / 1000) for _ in range(args.repeat)]
    per_call = statistics.median(us for us, _ in runs)
    lagged = f", messages up to {args.lag_ms:g} ms behind the clock" if args.lag_ms else ""
    print(f"timer queue: {per_call:.2f} µs per call, {runs[-1][1]} live timers{lagged}")


if __name__ == "__main__":
    main()
