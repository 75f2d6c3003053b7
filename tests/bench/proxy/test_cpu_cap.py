"""The CPU cap the overload benchmark puts on its edges: a busy process moved in runs at the
quota, and is given back to the root group when the cap ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.proxy.cpu import tree_cpu_times
from bench.proxy.cpu_cap import PERIOD_US, capped_cpu, cpu_hierarchy
from bench.proxy.errors import BenchError


def test_a_busy_process_capped_runs_at_the_quota_and_is_let_go_at_the_end() -> None:
    hierarchy, v2 = cpu_hierarchy()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with capped_cpu(f"callmesh-test-{os.getpid()}", 0.2) as cap:
            cap.add([busy.pid])
            assert cap.pids() == [busy.pid]
            quota = (cap.group / ("cpu.max" if v2 else "cpu.cfs_quota_us")).read_text()
            assert quota.split()[0] == str(PERIOD_US // 5)
            before = sum(tree_cpu_times(busy.pid))
            time.sleep(1.0)
            used = sum(tree_cpu_times(busy.pid)) - before
            assert used <= 0.3  # 0.2 CPU for a second, and a tick's rounding
            group = cap.group
        assert not group.exists()
        assert str(busy.pid) in (hierarchy / "cgroup.procs").read_text().split()
    finally:
        busy.kill()
        busy.wait()


def test_a_cap_under_the_kernels_floor_is_refused() -> None:
    with pytest.raises(BenchError, match=r"at least 0\.1 CPUs"), capped_cpu("callmesh-none", 0.05):
        pass


@pytest.mark.parametrize("v2", [False, True])
def test_the_quota_is_written_as_each_cgroup_version_reads_it(
    tmp_path: Path, v2: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a hierarchy of plain files (no kernel behind it): what each version is told, and a
    group that cannot be removed named, not raised."""
    if v2:
        (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (tmp_path / "cgroup.subtree_control").write_text("")
        hierarchy = tmp_path
    else:
        hierarchy = tmp_path / "cpu"
        hierarchy.mkdir()
        (hierarchy / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_hierarchy(tmp_path) == (hierarchy, v2)
    with capped_cpu("capped", 0.7, root=tmp_path) as cap:
        assert cap.group == hierarchy / "capped"
        if v2:
            assert (hierarchy / "cgroup.subtree_control").read_text() == "+cpu"
            assert (cap.group / "cpu.max").read_text() == "7000 10000"
        else:
            assert (cap.group / "cpu.cfs_period_us").read_text() == "10000"
            assert (cap.group / "cpu.cfs_quota_us").read_text() == "7000"
    assert f"the CPU-capped group {cap.group} is left behind" in capsys.readouterr().err


def test_a_group_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    hierarchy = tmp_path / "cpu"
    hierarchy.mkdir()
    (hierarchy / "cpu.cfs_quota_us").write_text("-1\n")
    (hierarchy / "capped").write_text("a file where the group would be")
    with (
        pytest.raises(BenchError, match="cannot make the CPU-capped group"),
        capped_cpu("capped", 0.7, root=tmp_path),
    ):
        pass


def test_a_machine_without_a_cpu_controller_is_told_so(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no cgroup cpu controller"):
        cpu_hierarchy(tmp_path)
