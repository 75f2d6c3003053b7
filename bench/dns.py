"""Median cost per call of RFC 3263 from the edge's DNS cache, in microseconds.

Run `python -m bench.dns` (or `python bench/dns.py`). What the proxy core pays
per call to turn a gateway's name into its hops (`shared.dns.Names.targets`; a
gateway given by IP address never gets there), all answers cached: a host with
a port (A/AAAA), a name with NAPTR → SRV → A/AAAA (three hosts, two priorities)
remembered from the previous call (only the weights drawn again), the same
walked through the cache (a call right after a refresh), and one host held down
after a failure. The first row, sorting three integers, is the yardstick for
this machine.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.dns import DnsCache, Names, NameSpec, Naptr, Srv
from shared.dns.cache import record_key

CALLS = 20_000
REPEATS = 7


def carrier_cache() -> DnsCache:
    cache = DnsCache()
    naptr = Naptr(10, 10, "S", "SIP+D2U", "_sip._udp.carrier.test.")
    cache.put(record_key("carrier.test", "NAPTR"), (naptr,), 3600, 0)
    srvs = (
        Srv(10, 1, 5071, "a.carrier.test."),
        Srv(10, 3, 5072, "b.carrier.test."),
        Srv(20, 1, 5073, "c.carrier.test."),
    )
    cache.put(record_key("_sip._udp.carrier.test", "SRV"), srvs, 3600, 0)
    for host in ("a", "b", "c"):
        cache.put(record_key(f"{host}.carrier.test", "A"), ("192.0.2.1",), 3600, 0)
        cache.put(record_key(f"{host}.carrier.test", "AAAA"), (), 3600, 0)
    return cache


def median_us(step: Callable[[], object]) -> float:
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(CALLS):
            step()
        runs.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(runs)


def main() -> None:
    cache = carrier_cache()
    names = Names(cache, rng=random.Random(1))
    carrier = NameSpec("carrier.test")
    held = Names(cache, rng=random.Random(1))
    held.failed("udp:b.carrier.test:5072", 0, retry_after=1e9)

    def walked() -> object:
        cache.generation += 1  # as after a refresh: the remembered answer is not used
        return names.targets(carrier, 1.0)

    rows = [
        ("yardstick: sorted() of 3 ints", lambda: sorted([3, 1, 2])),
        ("host with a port (A/AAAA)", lambda: names.targets(NameSpec("a.carrier.test", 5060), 1.0)),
        ("NAPTR → SRV, 3 hosts (remembered)", lambda: names.targets(carrier, 1.0)),
        ("NAPTR → SRV, 3 hosts (walked)", walked),
        ("NAPTR → SRV, one host held down", lambda: held.targets(carrier, 1.0)),
    ]
    print(f"| per call ({CALLS:,} calls, median of {REPEATS}) | µs |")
    print("| --- | --- |")
    for label, step in rows:
        print(f"| {label} | {median_us(step):.2f} |")


if __name__ == "__main__":
    main()
