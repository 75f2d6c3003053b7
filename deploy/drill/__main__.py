"""``python -m deploy.drill [--steps edge,redis,...] [--rate R] [--window S] ... [--docs]``.

Prints the table; with ``--docs`` (``make drill``) also writes it into
docs/high-availability.md. Exits 1 when anything acknowledged was lost or a
step never recovered, so a scheduled run can alarm on it.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import describe_machine
from deploy.drill import report
from deploy.drill.measure import Plan
from deploy.drill.run import drill


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.drill", description=__doc__)
    defaults = Plan()
    for field in fields(Plan):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=f"default {default}")
    parser.add_argument("--steps", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--docs", action="store_true", help="write the table into the docs")
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    return parser.parse_args(argv)


def _unwind(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``'s, a supervisor's) unwinds as Ctrl-C does: the labs' clean-ups
    run, so no Redis, RabbitMQ node, service or network namespace is left behind."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _unwind)
    args = parse(argv)
    plan = Plan(**{field.name: getattr(args, field.name) for field in fields(Plan)})
    keys = [key for key in args.steps.split(",") if key]
    started, machine = datetime.now(UTC), describe_machine()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = drill(args.keep, plan, keys)
    else:
        with tempfile.TemporaryDirectory(prefix="callmesh-drill-") as folder:
            results = drill(Path(folder), plan, keys)
    print(report.table(results))
    if args.docs:
        shown = [arg for arg in argv if arg != "--keep" and arg != str(args.keep)]  # a log folder
        command = shlex.join(["python", "-m", "deploy.drill", *shown])
        report.write(report.PAGE, report.section(results, plan, command, started, machine))
    return 1 if any(report.alarming(result) for result in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
