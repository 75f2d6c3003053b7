"""`make test`'s shards (deploy/test_shards.py): every test file in exactly one shard, the
recorded times dealt evenly, unknown files counted as the kind says, the record read from JUnit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import test_shards
from deploy.test_shards import UNKNOWN_SECONDS, files_to_test, read_record, seconds_per_file, shards

ROOT = Path(__file__).resolve().parents[2]


def test_the_longest_go_first_each_to_the_lightest_shard() -> None:
    seconds = {"a.py": 10.0, "b.py": 6.0, "c.py": 5.0, "d.py": 1.0}
    assert shards(seconds, seconds, 2, 1.0) == [["a.py", "d.py"], ["b.py", "c.py"]]


def test_unknown_files_count_as_told() -> None:
    files = ["known.py", "new1.py", "new2.py"]
    assert shards(files, {"known.py": 3.0}, 2, 1.0) == [["known.py"], ["new1.py", "new2.py"]]
    # The labs' unknown files count nothing: they follow the lightest shard, all of them.
    assert shards(files, {"known.py": 3.0}, 2, 0.0) == [["known.py"], ["new1.py", "new2.py"]]
    assert shards(["x.py", "y.py"], {}, 2, 0.0) == [["x.py", "y.py"], []]


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="0 is not a count"):
        shards(["a.py"], {}, 0, 1.0)


def test_every_test_file_of_the_repository_is_in_exactly_one_shard_of_each_kind() -> None:
    files = files_to_test(ROOT)
    assert "tests/deploy/test_test_shards.py" in files
    record = read_record()
    for kind in ("rest", "lab"):
        dealt = shards(files, record[kind], 2, UNKNOWN_SECONDS[kind])
        assert sorted(name for shard in dealt for name in shard) == files
        times = [sum(record[kind].get(name, UNKNOWN_SECONDS[kind]) for name in s) for s in dealt]
        assert max(times) <= 1.25 * min(times), (kind, times)  # about equal halves


def test_a_junit_report_gives_seconds_per_module_classes_folded(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.shared.test_x" name="a" time="1.5"/>'
        '<testcase classname="tests.shared.test_x.TestGroup" name="b" time="2.0"/>'
        '<testcase classname="tests.test_y" name="c" time=""/>'
        "</testsuite></testsuites>"
    )
    assert seconds_per_file(report) == {"tests/shared/test_x.py": 3.5, "tests/test_y.py": 0.0}


def test_the_command_line_prints_a_shard_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("tests/test_a.py", "tests/sub/test_b.py", "tests/sub/helper.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    rest, labs = tmp_path / "rest.xml", tmp_path / "labs.xml"
    rest.write_text('<testsuite><testcase classname="tests.test_a" name="t" time="9"/></testsuite>')
    labs.write_text("<testsuite/>")
    record = tmp_path / "record.json"
    monkeypatch.setattr(test_shards, "RECORD", record)
    monkeypatch.chdir(tmp_path)
    assert test_shards.main(["--record", str(rest), str(labs)]) == 0
    assert json.loads(record.read_text()) == {"lab": {}, "rest": {"tests/test_a.py": 9.0}}
    assert test_shards.main(["rest", "2", "2"]) == 0
    assert capsys.readouterr().out.split() == ["tests/sub/test_b.py"]
    with pytest.raises(SystemExit):
        test_shards.main(["rest", "3", "2"])
