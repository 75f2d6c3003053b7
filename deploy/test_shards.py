"""`make test`'s split of the test files into shards of about equal time.

Why: the suite waits far more than it computes (SIPp calls at a set rate, failover timers,
idle NAT mappings), so on two cores two pytest processes of the rest finish in about half the
wall time of one (docs/development.md, "Parallel pytest processes").
A shard is a list of test files: the longest first, each to the shard with the least time so far,
by the seconds a recorded run took per file (`deploy/test-durations.json`). A file the rest's
record does not know counts `UNKNOWN_SECONDS`, so new tests spread too; for the labs it counts
nothing (most files hold no lab test; a new lab file goes to the lighter shard). The record is
refreshed from a run's JUnit reports with `--record`, never by hand.

    python -m deploy.test_shards rest 1 2   # the files (under the current directory's tests/)
                                            # of the rest's first shard of two
    python -m deploy.test_shards --record rest.xml labs.xml   # refresh the record
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree

RECORD = Path(__file__).resolve().parent / "test-durations.json"
UNKNOWN_SECONDS = {"rest": 1.0, "lab": 0.0}
KINDS = ("rest", "lab")


def files_to_test(root: Path) -> list[str]:
    """Every test module under `root`'s `tests/`, relative to `root`, in a stable order."""
    return sorted(str(path.relative_to(root)) for path in (root / "tests").rglob("test_*.py"))


def shards(
    files: Iterable[str], seconds: Mapping[str, float], count: int, unknown: float
) -> list[list[str]]:
    """`files` dealt into `count` shards of about equal time (longest first, to the lightest),
    a file without a recorded time counting `unknown` seconds."""
    if count < 1:
        raise ValueError(f"shards: {count} is not a count of shards")
    weight = {name: seconds.get(name, unknown) for name in files}
    dealt: list[list[str]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for name in sorted(weight, key=lambda name: (-weight[name], name)):
        lightest = totals.index(min(totals))
        dealt[lightest].append(name)
        totals[lightest] += weight[name]
    return [sorted(shard) for shard in dealt]


def seconds_per_file(report: Path) -> dict[str, float]:
    """A JUnit report's time per test module (its test cases' `classname`, dotted)."""
    totals: dict[str, float] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        while parts and not parts[-1].startswith("test_"):
            parts.pop()  # a test class's name after its module's
        if parts:
            name = "/".join(parts) + ".py"
            totals[name] = totals.get(name, 0.0) + float(case.get("time", "0") or 0)
    return totals


def read_record(path: Path | None = None) -> dict[str, dict[str, float]]:
    path = path or RECORD
    if not path.exists():
        return {kind: {} for kind in KINDS}
    record = json.loads(path.read_text())
    return {kind: {str(k): float(v) for k, v in record.get(kind, {}).items()} for kind in KINDS}


def write_record(rest: Path, labs: Path, path: Path | None = None) -> None:
    record = {
        "rest": {k: round(v, 1) for k, v in sorted(seconds_per_file(rest).items())},
        "lab": {k: round(v, 1) for k, v in sorted(seconds_per_file(labs).items())},
    }
    (path or RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.test_shards", description=__doc__)
    parser.add_argument("--record", nargs=2, type=Path, metavar=("REST_XML", "LABS_XML"))
    parser.add_argument("kind", nargs="?", choices=KINDS)
    parser.add_argument("shard", nargs="?", type=int)
    parser.add_argument("count", nargs="?", type=int)
    args = parser.parse_args(argv)
    if args.record:
        write_record(*args.record)
        return 0
    if args.kind is None or args.shard is None or args.count is None:
        parser.error("give KIND SHARD COUNT, or --record REST_XML LABS_XML")
    if not 1 <= args.shard <= args.count:
        parser.error(f"shard {args.shard} is not one of 1..{args.count}")
    kind, files = args.kind, files_to_test(Path.cwd())
    dealt = shards(files, read_record()[kind], args.count, UNKNOWN_SECONDS[kind])
    print("\n".join(dealt[args.shard - 1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
