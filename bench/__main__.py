"""``make bench``: run every benchmark in turn, each printing its own table.

Each runs as its own process so one benchmark's memory and threads cannot
colour the next one's figures. ``python -m bench sip_parse routing`` runs a
subset; extra arguments after ``--`` go to every benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = {
    "sip_parse": "bench.sip_parse",
    "routing": "bench.routing",
    "registrar": "bench.registrar",
    "registrar_sipp": "bench.registrar_sipp",
    "edge_policies": "bench.edge_policies",
    "accounting": "bench.accounting",
    "proxy_core": "bench.proxy.core_calls",
    "proxy": "bench.proxy.run",
}


def main(argv: list[str]) -> int:
    argv, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    names = [name for name in argv if not name.startswith("-")] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", BENCHMARKS[name], *extra], check=False)
        print(f"=== {name}: {time.monotonic() - started:.0f} s, exit {result.returncode}")
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
