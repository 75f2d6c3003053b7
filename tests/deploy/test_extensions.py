"""What the compiled build covers, and when it is rebuilt (the compile itself: `make test`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import extensions as builder
from shared.extensions import EXT, MANIFEST, ROOT, Build, interpreter


def test_the_hot_path_is_compiled_but_the_exceptions_services_subclass() -> None:
    names = builder.sources()
    assert {
        "shared/sip/_readers.py",
        "shared/sip/__init__.py",
        "services/edge/proxy/core.py",
    } <= set(names)
    assert "shared/sip/errors.py" not in names
    assert all((ROOT / name).is_file() for name in names)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("shared/sip/__init__.py", "shared.sip"),
        ("shared/sip/uri.py", "shared.sip.uri"),
        ("services/edge/proxy/core.py", "services.edge.proxy.core"),
    ],
)
def test_module_names(source: str, module: str) -> None:
    assert builder.module_of(source) == module


def _built(root: Path, names: list[str]) -> None:
    build = builder.manifest_for(names, root)
    for binary, _, _ in build.modules.values():
        (root / EXT / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / EXT / binary).write_bytes(b"")
    (root / MANIFEST).write_text(build.to_json())


def test_a_build_is_current_until_a_source_changes_or_joins(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    for name in ("a", "b"):
        (tmp_path / "pkg" / f"{name}.py").write_text(f"X = {name!r}\n")
    names = ["pkg/a.py", "pkg/b.py"]
    assert not builder.current(names, tmp_path)
    _built(tmp_path, names)
    assert builder.current(names, tmp_path)
    assert (tmp_path / EXT / "pkg" / f"a{interpreter()}").is_file()
    assert not builder.current([*names, "pkg/c.py"], tmp_path)
    (tmp_path / "pkg" / "b.py").write_text("X = 'edited'\n")
    assert not builder.current(names, tmp_path)


def test_another_mypy_compiles_again(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("X = 1\n")
    _built(tmp_path, ["a.py"])
    assert builder.current(["a.py"], tmp_path)
    old = Build.from_json((tmp_path / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(Build(old.interpreter, "0.1", old.modules).to_json())
    assert not builder.current(["a.py"], tmp_path)


def test_nothing_is_built_when_the_variable_says_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLMESH_NO_EXTENSIONS", "1")
    assert builder.build(tmp_path) == 0
    assert "CALLMESH_NO_EXTENSIONS is set" in capsys.readouterr().out
    assert not (tmp_path / "build").exists()
