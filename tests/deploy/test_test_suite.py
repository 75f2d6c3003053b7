"""`make test`'s pytest runs (deploy/test-suite.sh), driven on a small project of real tests:
the rest in one shard per core (two at most, or CALLMESH_TEST_REST_SHARDS), the labs beside them
in one process and then the pure Python run, sharing one ports directory, printed after the
rest's first shard in order, and each failing the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "test-suite.sh"
REST_HEADER = "==== the rest's shard 2 of 2, run beside the above ===="
HEADER = "==== the failover labs (pytest -m lab), run beside the above ===="
PURE_HEADER = (
    "==== the SIP and proxy cores' tests again, in pure Python (CALLMESH_NO_EXTENSIONS=1) ===="
)
PROJECT = {
    "pyproject.toml": "[tool.pytest.ini_options]\ntestpaths = ['tests']\nmarkers = ['lab: lab']\n",
    "tests/test_rest.py": """
import os, pathlib, time
def test_rest_runs_while_the_labs_do() -> None:
    seen = pathlib.Path(os.environ["SEEN"])
    (seen / "rest").write_text(os.environ["CALLMESH_PORTS_DIR"])
    deadline = time.monotonic() + 60
    while not (seen / "lab").exists():  # the labs' process started beside this one
        assert time.monotonic() < deadline, "the labs did not run beside the rest"
        time.sleep(0.05)
    assert os.environ.get("FAIL") != "rest"
""",
    "tests/test_labs.py": """
import os, pathlib, pytest
@pytest.mark.lab
def test_lab() -> None:
    (pathlib.Path(os.environ["SEEN"]) / "lab").write_text(os.environ["CALLMESH_PORTS_DIR"])
    assert os.environ.get("FAIL") != "lab"
""",
    "tests/shared/sip/test_pure.py": """
import os, pathlib
def test_pure() -> None:  # in both runs: the rest's, and the pure Python one
    name = "pure" if os.environ.get("CALLMESH_NO_EXTENSIONS") else "compiled"
    seen = pathlib.Path(os.environ["SEEN"])
    (seen / name).write_text(os.environ["CALLMESH_PORTS_DIR"])
    assert os.environ.get("FAIL") != name
""",
    "tests/services/edge/proxy/test_proxy.py": "def test_proxy() -> None:\n    pass\n",
}


def _suite(
    tmp_path: Path, fail: str = "", shards: str = "2"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    project, seen = tmp_path / "project", tmp_path / "seen"
    for name, text in PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    seen.mkdir()
    env = {
        **os.environ, "SEEN": str(seen), "FAIL": fail, "TMPDIR": str(tmp_path),
        "CALLMESH_TEST_REST_SHARDS": shards,
    }  # fmt: skip # the run's settings
    env.pop("CALLMESH_NO_EXTENSIONS", None)
    done = subprocess.run(
        [str(SCRIPT), sys.executable],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip # one run
    return done, seen


def test_the_shards_run_beside_each_other_sharing_ports_and_print_in_order(tmp_path: Path) -> None:
    done, seen = _suite(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ports = (seen / "rest").read_text()
    assert {(seen / name).read_text() for name in ("lab", "compiled", "pure")} == {ports}
    assert Path(ports).parent.parent == tmp_path
    assert not Path(ports).parent.exists()  # the run's directory is removed afterwards
    first, _, after = done.stdout.partition(REST_HEADER)
    second, _, after = after.partition(HEADER)
    labs, _, pure = after.partition(PURE_HEADER)
    # Four files: two to each shard of the rest (no recorded times here), every file to the
    # labs' one process.
    assert "the rest in 2 shard(s), the labs beside them" in first
    assert "1 passed, 1 deselected" in first  # test_proxy; test_labs' lab test deselected
    assert "2 passed" in second  # test_pure, test_rest
    assert "1 passed, 3 deselected" in labs  # the labs' run ran the labs alone
    assert "2 passed" in pure


def test_one_shard_of_the_rest_runs_every_rest_test_beside_the_labs(tmp_path: Path) -> None:
    done, seen = _suite(tmp_path, shards="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the rest in 1 shard(s)" in done.stdout
    assert "shard 2 of" not in done.stdout
    first = done.stdout.partition(HEADER)[0]
    assert "3 passed, 1 deselected" in first  # test_proxy, test_pure, test_rest
    ran = ("rest", "lab", "compiled", "pure")
    assert [name for name in ran if (seen / name).exists()] == list(ran)


def test_a_count_of_shards_out_of_range_is_refused(tmp_path: Path) -> None:
    done, seen = _suite(tmp_path, shards="0")
    assert done.returncode == 2
    assert "CALLMESH_TEST_REST_SHARDS=0 is not a count" in done.stderr
    assert not any(seen.iterdir())  # nothing ran


def test_a_failing_lab_fails_the_suite_and_is_named(tmp_path: Path) -> None:
    done, seen = _suite(tmp_path, fail="lab")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "make test: failed: the labs"
    assert "make test: the machine at the end: load" in done.stdout
    assert "1 failed" in done.stdout.partition(HEADER)[2].partition(PURE_HEADER)[0]
    assert (seen / "pure").exists()  # run all the same


def test_a_failing_rest_fails_the_suite_and_is_named(tmp_path: Path) -> None:
    done, _ = _suite(tmp_path, fail="rest")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "make test: failed: the suite"
    assert "1 failed" in done.stdout.partition(REST_HEADER)[2].partition(HEADER)[0]
    assert "1 passed" in done.stdout.partition(HEADER)[2]


def test_a_failing_pure_python_run_fails_the_suite_and_is_named(tmp_path: Path) -> None:
    done, _ = _suite(tmp_path, fail="pure")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "make test: failed: the pure Python run"
    assert "1 failed" in done.stdout.partition(PURE_HEADER)[2]


def test_no_test_file_for_the_rest_fails_the_suite(tmp_path: Path) -> None:
    """A tree whose shard listing finds no file (all shards empty) fails the suite rather
    than pass having run nothing."""
    done = subprocess.run(
        [str(SCRIPT), sys.executable], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, check=False, env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip # one run
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no test file" in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("make test: failed: the suite")
