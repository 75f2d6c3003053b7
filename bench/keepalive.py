"""What keeping NAT bindings open costs an edge: schedule and OPTIONS per binding per interval.

Run ``python -m bench.keepalive [--bindings N]`` (or ``python -m bench keepalive``).
``--bindings`` NAT'd bindings (default 100,000) are watched, then one whole
keepalive interval is ticked through in steps of a second, as the runtime
would: every due binding gets its OPTIONS built to bytes, and every ping is
answered (a 200 parsed, as the edge does to match it to its binding).
Printed: CPU per binding to watch it, CPU per binding per interval (schedule,
OPTIONS, answer), the same for 100,000 bindings (one core's share of each
interval), and the busiest second's pings against the even share (the spread).
Sending is not counted: a datagram's ``sendto`` is the kernel's, the same for
any ping.
"""

from __future__ import annotations

import argparse
import time

from services.edge.keepalive.ping import options_ping
from services.edge.keepalive.schedule import KeepaliveSchedule
from shared.registrar.model import Location
from shared.sip.message import Response, parse_message
from shared.sip.responses import make_response

INTERVAL = 30.0


def bindings(count: int) -> list[Location]:
    return [
        Location(
            aor=f"sip:user{n}@example.com",
            contact=f"sip:user{n}@192.168.{n // 250 % 250}.{n % 250 + 1}:5060",
            expires_at=1e12,
            received=f"sip:203.0.113.{n % 250 + 1}:{10000 + n % 50000}",
            transport="udp",
            edge="edge-a",
        )
        for n in range(count)
    ]


def run(count: int) -> dict[str, float]:
    found = bindings(count)
    schedule = KeepaliveSchedule(INTERVAL, timeout=4 * INTERVAL)
    cpu = time.process_time()
    for location in found:
        schedule.watch(location, now=0.0)
    watched = time.process_time() - cpu
    answers = {  # the phones' part, made before the clock runs
        location.contact: make_response(
            options_ping(location, "198.51.100.1", 5060, 1), 200
        ).to_bytes()
        for location in found
    }
    per_second, sent = [], 0
    cpu = time.process_time()
    for second in range(1, int(INTERVAL) + 1):
        tick = schedule.tick(float(second))
        for ping in tick.pings:
            options_ping(ping.location, "198.51.100.1", 5060, 1).to_bytes()
            answer = parse_message(answers[ping.location.contact])
            assert isinstance(answer, Response)
            schedule.answered(ping.location.aor, ping.location.contact)
        per_second.append(len(tick.pings))
        sent += len(tick.pings)
    used = time.process_time() - cpu
    if sent != count:
        raise SystemExit(f"{sent} pings in one interval for {count} bindings")
    return {
        "watch µs/binding": watched / count * 1e6,
        "ping µs/binding/interval": used / count * 1e6,
        "CPU s per 100k per interval": used / count * 100_000,
        "core share % (100k, 30 s)": used / count * 100_000 / INTERVAL * 100,
        "busiest second / even share": max(per_second) / (count / INTERVAL),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=100_000)
    options = parser.parse_args()
    figures = run(options.bindings)
    print(f"{options.bindings} NAT'd bindings, interval {INTERVAL:g} s, every ping answered")
    print(f"{'figure':<30}{'value':>12}")
    for name, value in figures.items():
        print(f"{name:<30}{value:>12.2f}")


if __name__ == "__main__":
    main()
