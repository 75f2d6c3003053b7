"""Two data centres: how stale a route change is across DCs, and how long DC 2 refuses
re-registrations after DC 1 dies.

Run ``python -m bench.two_dc [--runs N] [--changes M]`` (or ``python -m bench two_dc``).
Each run builds the lab of ``deploy/two_dc/lab.py`` (both DCs as real processes on
loopback: brokers federating each other's events, one Redis primary in DC 1 with
its replica in DC 2, a Sentinel per DC and a tie-breaker), then:

- ``route lag``: M gateways written one at a time through DC 1's routing
  service; for each, seconds from the API's answer until DC 1's edge and DC 2's
  edge route with it (their ``/metrics``, polled every 10 ms: the figure is
  ±10 ms plus one HTTP round trip);
- every DC 1 process SIGKILLed; ``named``: seconds until the Sentinels name DC
  2's Redis the primary; ``re-registered``: seconds until a phone registered
  before gets a 200 through DC 2's edge (REGISTERs from the kill on, one every
  0.1 s after each 503 or lost answer); ``routed``: seconds until a call to the
  gateway through DC 2 reached it (DC 2 carried one before the kill, as a DC in
  service has: its routing table and the domain are in its edge's memory);
- DC 1 started again (``restart_dc``): seconds until its services are ready
  and the Sentinels see its Redis as a replica.

Printed: median, min and max of each over all runs.  The lab's Sentinels call
a primary down after 1 s (``DOWN_AFTER_MS``); a deployment across sites would
use more (docs/high-availability.md), and the failover figures grow by the
difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deploy.two_dc.lab import TwoDcLab, two_dc_lab
from deploy.two_dc.peers import UdpPeer, call

NUMBER = "1555"


def route_lags(lab: TwoDcLab, changes: int) -> tuple[list[float], list[float]]:
    """Seconds until DC 1's edge and DC 2's edge route with each of `changes` gateways."""
    local, remote = [], []
    for n in range(changes):
        version = lab.put(1, {f"gateways/lag-{n}": {"address": "sip:192.0.2.9"}})
        answered = time.monotonic()
        lab.wait_routed(1, version)
        local.append(time.monotonic() - answered)
        lab.wait_routed(2, version)
        remote.append(time.monotonic() - answered)
    return local, remote


def one_run(folder: Path, changes: int) -> dict[str, list[float]]:
    gateway = UdpPeer()
    with two_dc_lab(folder) as lab:
        lab.wait_routed(2, lab.put(1, {
            "gateways/gw": {"address": f"sip:127.0.0.1:{gateway.port}"},
            "rules/gw": {"prefix": NUMBER, "gateways": ["gw"]},
        }))  # fmt: skip # the table as a table
        local, remote = route_lags(lab, changes)
        lab.subscriber("alice", "alice-pw")
        phone = UdpPeer("alice", password="alice-pw")
        assert phone.register(lab.dcs[1].edge_sip) == 200
        dialled = f"sip:{NUMBER}0000@example.com"
        assert call(lab.dcs[2].edge_sip, dialled, gateway) == 486  # DC 2 in service before
        killed = time.monotonic()
        lab.kill_dc(1)
        with ThreadPoolExecutor(1) as watcher:  # the Sentinels watched while the phone retries
            named = watcher.submit(lab.wait_primary, 2)
            while (status := call(lab.dcs[2].edge_sip, dialled, gateway)) != 486:
                assert time.monotonic() - killed < 30, f"DC 2 answers {status}"
                time.sleep(0.05)
            routed = time.monotonic() - killed
            lab.reregister(2, phone)
            registered = time.monotonic() - killed
            primary_named = named.result()  # timed from just after the kill
        back = lab.restart_dc(1)
        refusals = {status: lab.refusals.count(status) for status in set(lab.refusals)}
        print(f"answers before the re-registration's 200 (0: lost): {refusals}", flush=True)
    gateway.close()
    phone.close()
    return {
        "route lag, DC 1's edge": local,
        "route lag, DC 2's edge": remote,
        "DC 1 killed: DC 2 routed a call": [routed],
        "DC 1 killed: DC 2's Redis named primary": [primary_named],
        "DC 1 killed: DC 2 accepted the re-registration": [registered],
        "DC 1 restarted: ready (services, Sentinels)": [back],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="callmesh-two-dc-") as folder:
            for name, values in one_run(Path(folder) / f"run-{n}", args.changes).items():
                figures.setdefault(name, []).extend(values)
    print(f"two data centres, {args.runs} runs, {args.changes} route changes each")
    print(f"{'seconds':48} {'median':>8} {'min':>8} {'max':>8} {'n':>4}")
    for name, values in figures.items():
        row = f"{statistics.median(values):8.3f} {min(values):8.3f} {max(values):8.3f}"
        print(f"{name:48} {row} {len(values):4}")


if __name__ == "__main__":
    main()
