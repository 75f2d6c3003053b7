"""`make mutants`: mutmut over one package at a time, or an even sample of it, and its rate.

Why a sample: the scope holds ~10,900 mutants and the machine has two shared cores, so a
package too big to run whole is run on every n-th mutant in source order (deterministic:
the same sample each time, so a rate compares with the last one).  Why this wrapper:
mutmut 3 has no sampling, and its own report counts every mutant of the scope, run or not.

Each spec is ``package[:n]``; a mutant counts under the longest package naming it, so
``shared.sip.auth.digest:1 shared.sip:8`` runs digest whole and the rest of the SIP core sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path("mutants")
MUTMUT = str(Path(sys.executable).with_name("mutmut"))
ALIVE = ("survived", "no tests")
KILLED = ("killed", "timeout", "caught by type check")


def exit_codes() -> dict[str, int | None]:
    """Every mutant of the scope (source order) and its last exit code (None: not run)."""
    codes: dict[str, int | None] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def package_of(name: str, packages: list[str]) -> str | None:
    found = [p for p in packages if name.startswith(p + ".")]
    return max(found, key=len) if found else None


def run_package(package: str, names: list[str], again: bool) -> None:
    codes = exit_codes()
    todo = [n for n in names if not again or status_by_exit_code[codes[n]] not in KILLED]
    print(f"{package}: running {len(todo)} of {len(names)} mutants", flush=True)
    if todo:
        subprocess.run([MUTMUT, "run", "--max-children", "1", *todo], check=False)


def report(package: str, every: int, names: list[str]) -> str:
    codes = exit_codes()
    verdicts = {name: str(status_by_exit_code[codes[name]]) for name in names}
    for name, verdict in sorted(verdicts.items()):
        if verdict not in KILLED:
            print(f"{verdict:>12}  {name}")
    counts = Counter(verdicts.values())
    ran = len(names) - counts["not checked"]
    alive = sum(counts[status] for status in ALIVE)
    killed = sum(counts[status] for status in KILLED)
    rate = 100 * alive / max(ran, 1)
    sample = f"{len(names)} (1 in {every})"
    return f"| `{package}` | {sample} | {ran} | {killed} | {alive} | {rate:.1f} % |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("specs", nargs="+", help="package[:n], e.g. shared.sip.auth.digest:1")
    parser.add_argument("--again", action="store_true", help="rerun only the samples' survivors")
    parser.add_argument("--report", action="store_true", help="report the last results only")
    args = parser.parse_args()
    every = {spec.partition(":")[0]: int(spec.partition(":")[2] or 1) for spec in args.specs}
    os.environ["CALLMESH_NO_EXTENSIONS"] = "1"  # mutmut's runs: a compiled module hides mutants
    if not args.report:
        # Generates the mutants and maps tests to functions (new tests too), runs none.
        subprocess.run(
            [MUTMUT, "run", "--max-children", "1", "callmesh-none"],
            capture_output=True,
            check=False,
        )
    packages = list(every)
    names: dict[str, list[str]] = {package: [] for package in packages}
    for name in exit_codes():
        package = package_of(name, packages)
        if package is not None:
            names[package].append(name)
    rows = [
        "| package | mutants run (sample) | ran | killed or timed out | surviving | rate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for package in packages:
        chosen = names[package][:: every[package]]
        if not args.report:
            run_package(package, chosen, args.again)
        rows.append(report(package, every[package], chosen))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
