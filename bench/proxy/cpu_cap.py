"""A CPU cap on processes, for a benchmark that needs an edge slower than this machine's.

Why: an edge past its capacity is the case load shedding is for, and here SIPp saturates
(near 4000 calls/s) before two edge workers do.  A control group's CPU quota gives the
edge less CPU than the machine has, spread over short periods (10 ms) so that it runs
like a slower machine rather than stopping for tens of milliseconds at a time.  cgroup v2
(`cpu.max`) where its cpu controller is enabled, else v1's cpu hierarchy
(`cpu.cfs_quota_us`); either needs root.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from bench.proxy.errors import BenchError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
"""The quota's period: short, so a capped process waits at most a few ms at a time."""
MIN_CPUS = 0.1
"""The smallest cap: a quota of 1 ms a period, the kernel's floor."""


def cpu_hierarchy(root: Path = CGROUP_ROOT) -> tuple[Path, bool]:
    """Where CPU-capped groups are made, and whether it is cgroup v2."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return root, True
    if (root / "cpu" / "cpu.cfs_quota_us").exists():
        return root / "cpu", False
    raise BenchError(f"no cgroup cpu controller under {root} (v2 with cpu enabled, or v1 cpu)")


@contextmanager
def capped_cpu(name: str, cpus: float, root: Path = CGROUP_ROOT) -> Iterator[CpuCap]:
    """A group allowed `cpus` CPUs (0.5: half of one).  On exit its processes are moved to
    the hierarchy's root group (not back where they were: the benchmark's edges are about to
    stop) and the group is removed; one left behind is named on stderr."""
    if cpus < MIN_CPUS:
        raise BenchError(f"a CPU cap must be at least {MIN_CPUS} CPUs")
    hierarchy, v2 = cpu_hierarchy(root)
    group = hierarchy / name
    quota = round(cpus * PERIOD_US)
    try:
        group.mkdir(exist_ok=True)
        if v2:
            (hierarchy / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
    except OSError as error:
        with suppress(OSError):
            group.rmdir()
        raise BenchError(f"cannot make the CPU-capped group {group}: {error}") from error
    cap = CpuCap(group)
    try:
        yield cap
    finally:
        _remove(cap, hierarchy)


def _remove(cap: CpuCap, hierarchy: Path) -> None:
    """A process forked while the group is emptied is born in it: a few passes."""
    for _ in range(5):
        for pid in cap.pids():
            with suppress(OSError):  # gone meanwhile
                (hierarchy / "cgroup.procs").write_text(str(pid))
        try:
            cap.group.rmdir()
        except OSError:
            continue
        return
    print(f"bench: the CPU-capped group {cap.group} is left behind", file=sys.stderr)


class CpuCap:
    """A capped group processes are moved into."""

    def __init__(self, group: Path) -> None:
        self.group = group

    def add(self, pids: Iterable[int]) -> None:
        """Move `pids` in (their children forked later are born in it); one gone meanwhile
        is skipped."""
        for pid in pids:
            try:
                (self.group / "cgroup.procs").write_text(str(pid))
            except OSError as error:
                if Path(f"/proc/{pid}").exists():
                    raise BenchError(f"cannot cap process {pid}: {error}") from error

    def pids(self) -> list[int]:
        """The processes in the group now (none once it is removed)."""
        try:
            text = (self.group / "cgroup.procs").read_text()
        except FileNotFoundError:
            return []
        return [int(line) for line in text.split()]
