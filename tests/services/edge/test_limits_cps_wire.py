"""A peer's calls per second hold across two edges of two workers each (SIPp on the wire).

``max_cps: 50`` on one peer (loopback), 200 calls per second offered by four SIPp
callers, two at each edge: by the end of every full second after the first (the edges
warming up), counted from the gateway's trace timestamps of the INVITEs it received, the
calls accepted since are 50 per second within ±10 % of one second's worth; the
rest are refused with 503, Retry-After and a Reason naming the limit. The offer
lasts ``CALLMESH_TEST_CPS_SECONDS`` (5 by default; the issue's 20 once by hand), and is
made again once when the edges admitted too few (`ATTEMPTS`).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from datetime import datetime
from itertools import accumulate
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import Edge, Sipp, sipp, wait_bound
from tests.services.edge.test_limits_wire import _workdirs, edge_settings, edges

pytestmark = [pytest.mark.wire, pytest.mark.integration]

__all__ = ["_workdirs", "edge_settings", "edges"]  # the fixtures of the concurrency tests, shared

SECONDS = int(os.environ.get("CALLMESH_TEST_CPS_SECONDS", "5"))
CPS = 50
OFFERED = 200
ATTEMPTS = 3
"""Offers made at most. Another one is made only when the last admitted too few: on a
loaded two-core machine (`make test` runs shards side by side) the edges can be starved for
half a second, and a full bucket does not keep what it could not take (CI saw 54, 28, 50,
29, 42; and twice in a row: 55, 49, 43, 31, 50 on the second offer). Too many admitted is
never retried: that is the limit failing."""
_STAMP = r"^-+ (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*\n"
_CALL = r"\s*\nINVITE [^\n]*\n(?:[^\n]+\n)*?Call-I[Dd]: (\S+)"
_RECEIVED = re.compile(_STAMP + r"\S+ message received \[\d+\] bytes :" + _CALL, re.MULTILINE)
_SENT = re.compile(_STAMP + r"\S+ message sent \(\d+ bytes\):" + _CALL, re.MULTILINE)


def invites_per_second(trace: str, sent: bool = False) -> list[int]:
    """New INVITEs received (or ``sent``) in each whole second since the first, from a SIPp
    message trace (or several joined); a retransmission counts at its first time."""
    times: dict[str, float] = {}
    for day, clock, call_id in (_SENT if sent else _RECEIVED).findall(trace):
        at = datetime.fromisoformat(f"{day} {clock}").timestamp()
        times[call_id] = min(at, times.get(call_id, at))
    assert times, "no INVITE in the trace"
    first = min(times.values())
    counts = Counter(int(at - first) for at in times.values())
    return [counts[second] for second in range(max(counts) + 1)]


def test_a_peers_cps_holds_within_ten_percent_every_second_across_two_edges(
    edges: tuple[Edge, Edge], tmp_path: Path
) -> None:
    first, second = edges
    gw = free_port()
    first.route({"g": gw}, {"all": ("1", ["g"])})
    peer = {"addresses": ["127.0.0.1/32"], "trusted": True, "limits": {"max_cps": CPS}}
    second.wait_routed(first.put({"peers/pbx": peer}))
    gateway = sipp(tmp_path, "gateway", gw, calls=CPS * SECONDS * 2 * ATTEMPTS)
    wait_bound(gw)
    for attempt in range(1, ATTEMPTS + 1):
        offered, per_second, traces = _offer(edges, gateway, tmp_path)
        # Neither the first second (the edges' first calls: connections, scripts and caches
        # warming, the four callers starting one after another; a CI run at load 5 saw 28,
        # then 52, 49, 45, 53) nor the last (the offer ends in it, stragglers after).
        full = per_second[1 : SECONDS - 1]
        # The premise first: SIPp kept offering (a machine starved of CPU cannot: then this
        # says so, instead of blaming the limit).
        assert min(offered[1 : SECONDS - 1]) >= OFFERED * 3 // 4, ("offer not kept", offered)
        # Running totals, not each second alone: a call admitted at the end of one second and
        # received by the gateway early in the next moves between those two on a busy machine
        # (a CI run at load 17: 54 then 42), never the total.  Per second the total may stray
        # by a tenth of one second's calls: twice the rate (two edges each counting alone)
        # fails at once.
        totals = list(accumulate(full))
        over = any(total > CPS * n + CPS // 10 for n, total in enumerate(totals, 1))
        under = any(total < CPS * n - CPS // 10 for n, total in enumerate(totals, 1))
        if over or not under or attempt == ATTEMPTS:
            break
        time.sleep(1.5)  # the bucket full again, the attempt's calls ended
    assert not (over or under), (attempt, per_second, offered)
    refused = sum(trace.count("SIP/2.0 503 Service Unavailable") for trace in traces)
    assert refused >= sum(offered) - sum(per_second), (refused, per_second)
    assert all('text="calls per second limit of peer:pbx"' in trace for trace in traces)
    assert all("Retry-After: 1" in trace for trace in traces)


def _offer(
    edges: tuple[Edge, Edge], gateway: Sipp, tmp_path: Path
) -> tuple[list[int], list[int], list[str]]:
    """`OFFERED` calls a second for `SECONDS`, a quarter by each caller, two at each edge:
    the INVITEs offered and the gateway's received in each second, and the callers' traces."""
    first, second = edges
    seen = len(gateway.messages())
    each = OFFERED // 4
    args = ("-s", "14075551234", "-r", str(each), "-l", str(each))
    callers = [
        sipp(tmp_path, "caller_limited", free_port(), remote=edge.sip_port, calls=each * SECONDS,
             args=args)
        for edge in (first, second, first, second)
    ]  # fmt: skip # one caller a line
    for caller in callers:
        caller.wait(timeout=SECONDS + 60)
    traces = [caller.messages() for caller in callers]
    offered = invites_per_second("".join(traces), sent=True)
    return offered, invites_per_second(gateway.messages()[seen:]), traces
