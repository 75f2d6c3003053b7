"""The interpreted-calls count: the hook a process loads at start-up, and the counts' reading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.interpreted_calls import HOOK, edge_counting_into, read_counts
from bench.proxy.callmesh import REPO

SCRIPT = """
import sys
import time
from dataclasses import dataclass

@dataclass(frozen=True)
class Key:
    name: str

def work() -> None:
    pass

for _ in range(7):
    work()
hash(Key("a"))
time.sleep(1.2)  # the hook writes twice a second
print("profiled" if sys.getprofile() is not None else "not profiled")
"""


def run_counted(tmp_path: Path, counting: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The script run with the hook on its path, and the folder its counts go to."""
    script, counts = tmp_path / "script.py", tmp_path / "counts"
    script.write_text(SCRIPT)
    counts.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{HOOK}:{REPO}"}
    env.pop("CALLMESH_BENCH_INTERPRETED", None)
    if counting:
        env["CALLMESH_BENCH_INTERPRETED"] = str(counts)
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return completed, counts


def test_a_process_started_with_the_hook_counts_each_interpreted_call(tmp_path: Path) -> None:
    completed, folder = run_counted(tmp_path, counting=True)
    assert completed.returncode == 0, completed.stderr
    counts = read_counts(folder)
    assert completed.stdout == "profiled\n"
    assert counts[f"{tmp_path}/script.py:10:work"] == 7
    # a dataclass's generated method is named by its class
    assert sum(n for where, n in counts.items() if where.endswith(":Key.__hash__")) == 1


def test_without_the_variable_the_hook_counts_nothing(tmp_path: Path) -> None:
    completed, folder = run_counted(tmp_path, counting=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "not profiled\n"  # the hook was on the path, and stayed off
    assert not list(folder.iterdir())


def test_the_reading_sums_every_process_and_skips_a_file_being_written(tmp_path: Path) -> None:
    (tmp_path / "101").write_text(f"3\t{REPO}/shared/a.py:1:f\n2\tx.py:2:g\n")
    (tmp_path / "102").write_text("4\tx.py:2:g\n")
    (tmp_path / "103.tmp").write_text("100\tx.py:2:g\n")
    assert read_counts(tmp_path) == {"shared/a.py:1:f": 3, "x.py:2:g": 6}


def test_the_edge_loads_the_hook_first_and_counts_into_the_folder(tmp_path: Path) -> None:
    env = edge_counting_into(tmp_path).env
    assert env["PYTHONPATH"].split(":") == [str(HOOK), str(REPO)]
    assert env["CALLMESH_BENCH_INTERPRETED"] == str(tmp_path)
