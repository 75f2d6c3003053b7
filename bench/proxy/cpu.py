"""CPU time of a process and all its descendants, read from /proc.

Proxies fork workers (Kamailio's children, uvicorn-style workers), so the
cost of a call is only visible when the whole tree is summed.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields after the command name, which may itself hold spaces and ')'."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children = _children_by_parent()
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def tree_cpu_times(root: int) -> tuple[float, float]:
    """(utime, stime) in seconds summed over the live tree; a process gone meanwhile counts 0.

    Kept apart because the kernel's share (socket calls) is a floor no proxy
    can go below, whatever its language: it tells how much of a gap is ours.
    """
    user = system = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # stat fields 14 and 15 (utime, stime); fields[0] here is field 3.
            user += int(fields[11])
            system += int(fields[12])
    return user / _TICKS_PER_SECOND, system / _TICKS_PER_SECOND


def tree_cpu_seconds(root: int) -> float:
    """utime+stime summed over the live tree."""
    return sum(tree_cpu_times(root))
