"""``make bench``: run every benchmark in turn, each printing its own table.

Each runs as its own process so one benchmark's memory and threads cannot
colour the next one's figures. ``python -m bench sip_parse routing`` runs a
subset; extra arguments after ``--`` go to every benchmark. What each prints is
also written to ``docs/benchmarks/latest.md`` (``bench/figures.py``;
``--figures PATH`` writes elsewhere) for each benchmark that succeeded.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench import figures

BENCHMARKS = {
    "sip_parse": "bench.sip_parse",
    "timers": "bench.timers",
    "routing": "bench.routing",
    "registrar": "bench.registrar",
    "registrar_sipp": "bench.registrar_sipp",
    "edge_policies": "bench.edge_policies",
    "dns": "bench.dns",
    "accounting": "bench.accounting",
    "outbox": "bench.outbox",
    "publisher_turns": "bench.publisher_turns",
    "rtpengine": "bench.rtpengine",
    "media_relay": "bench.media_relay",
    "media_relay_wire": "bench.media_relay_wire",
    "keepalive": "bench.keepalive",
    "keepalive_start": "bench.keepalive_start",
    "capture": "bench.capture",
    "capture_wire": "bench.capture_wire",
    "b2bua": "bench.b2bua",
    "capture_instructions": "bench.capture_instructions",
    "tls": "bench.tls",
    "limits": "bench.limits",
    "shared_counts": "bench.shared_counts",
    "redis_wait": "bench.redis_wait",
    "fraud": "bench.fraud",
    "tls_idle": "bench.tls_idle",
    "vip": "bench.vip",
    "two_dc": "bench.two_dc",
    "stream_handon": "bench.stream_handon",
    "udp_receive": "bench.udp_receive",
    "proxy_core": "bench.proxy.core_calls",
    "proxy_runtime": "bench.proxy.runtime_calls",
    "interpreted_calls": "bench.interpreted_calls",
    "overload": "bench.overload",
    "udp_coalesce": "bench.udp_coalesce",
    "proxy": "bench.proxy.run",
}


def run_one(name: str, extra: list[str]) -> tuple[int, figures.Run]:
    """Run one benchmark, its output shown as it comes and kept for the figures page."""
    argv = [sys.executable, "-m", BENCHMARKS[name], *extra]
    started, clock = figures.now(), time.monotonic()
    lines = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    command = shlex.join(["python", "-m", "bench", name, *(["--", *extra] if extra else [])])
    run = figures.Run(name, command, started, time.monotonic() - clock, "".join(lines))
    return process.returncode, run


def main(argv: list[str]) -> int:
    argv, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    page = figures.LATEST
    if "--figures" in argv:
        at = argv.index("--figures")
        page = Path(argv[at + 1])
        del argv[at : at + 2]
    names = [name for name in argv if not name.startswith("-")] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    machine = figures.describe_machine()
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        returncode, run = run_one(name, extra)
        print(f"=== {name}: {run.seconds:.0f} s, exit {returncode}")
        if returncode != 0:
            failed.append(name)
        else:
            figures.update(page, [run], machine, list(BENCHMARKS))
    if failed:
        print(f"failed: {', '.join(failed)} (their previous figures are kept)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
