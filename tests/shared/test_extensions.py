"""Which build a process loads: the compiled one only while it matches every source."""

from __future__ import annotations

from pathlib import Path

import pytest

import shared.sip.message
from shared import extensions
from shared.extensions import EXT, MANIFEST, Build, CompiledFinder, choose, source_hash


def _tree(root: Path, interpreter: str | None = None) -> Build:
    """A package `pkg` (compiled `__init__` and `hot`, pure `cold`) and its manifest on disk."""
    (root / "pkg").mkdir(parents=True)
    for name in ("__init__", "hot", "cold"):
        (root / "pkg" / f"{name}.py").write_text(f"NAME = {name!r}\n")
    suffix = interpreter or extensions.interpreter()
    modules: dict[str, tuple[str, str | None, str | None]] = {
        "rt__mypyc": (f"rt{suffix}", None, None)
    }
    for name, source in (("pkg", "pkg/__init__.py"), ("pkg.hot", "pkg/hot.py")):
        binary = source.replace(".py", suffix)
        modules[name] = (binary, source, source_hash(root / source))
    build = Build(suffix, "mypy", modules)
    for binary, _, _ in modules.values():
        (root / EXT / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / EXT / binary).write_bytes(b"")
    (root / MANIFEST).write_text(build.to_json())
    return build


@pytest.fixture(autouse=True)
def extensions_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests choose for a tree of their own, whichever pass of `make test` runs them."""
    monkeypatch.delenv(extensions.DISABLE, raising=False)


def test_a_build_matching_every_source_is_chosen(tmp_path: Path) -> None:
    _tree(tmp_path)
    finder, state = choose(tmp_path)
    assert isinstance(finder, CompiledFinder)
    assert state == "compiled by mypyc (2 modules)"


def test_a_module_written_in_c_is_counted_apart_and_checked_like_the_others(
    tmp_path: Path,
) -> None:
    build = _tree(tmp_path)
    (tmp_path / "pkg" / "_fast.c").write_text("/* C */\n")
    binary = f"pkg/_fast{extensions.interpreter()}"
    (tmp_path / EXT / binary).write_bytes(b"")
    modules = {
        **build.modules,
        "pkg._fast": (binary, "pkg/_fast.c", source_hash(tmp_path / "pkg/_fast.c")),
    }
    (tmp_path / MANIFEST).write_text(Build(build.interpreter, "mypy", modules).to_json())
    assert choose(tmp_path)[1] == "compiled by mypyc (2 modules) and 1 in C"
    (tmp_path / "pkg" / "_fast.c").write_text("/* edited */\n")
    assert (
        choose(tmp_path)[1] == "pure Python (pkg/_fast.c changed since it was compiled: make fast)"
    )


def test_an_edited_source_sends_every_module_back_to_pure_python(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "pkg" / "hot.py").write_text("NAME = 'edited'\n")
    assert choose(tmp_path) == (
        None,
        "pure Python (pkg/hot.py changed since it was compiled: make fast)",
    )


def test_a_missing_module_file_or_source_is_no_build(tmp_path: Path) -> None:
    _tree(tmp_path / "a")
    runtime = f"rt{extensions.interpreter()}"
    (tmp_path / "a" / EXT / runtime).unlink()
    assert choose(tmp_path / "a") == (None, f"pure Python ({runtime} is missing: make fast)")
    _tree(tmp_path / "b")
    (tmp_path / "b" / "pkg" / "hot.py").unlink()
    assert "pkg/hot.py changed" in choose(tmp_path / "b")[1]


def test_a_build_for_another_interpreter_is_not_loaded(tmp_path: Path) -> None:
    _tree(tmp_path, interpreter=".cpython-399-x86_64-linux-gnu.so")
    finder, state = choose(tmp_path)
    assert finder is None and "built for .cpython-399" in state


def test_no_manifest_or_an_unreadable_one_is_pure_python(tmp_path: Path) -> None:
    assert choose(tmp_path) == (None, "pure Python (no compiled build: make fast)")
    (tmp_path / "build").mkdir()
    (tmp_path / MANIFEST).write_text('{"interpreter": 1}')
    finder, state = choose(tmp_path)
    assert finder is None and state.startswith("pure Python (unreadable extensions.json")


@pytest.mark.parametrize(
    ("value", "compiled"), [("1", False), ("yes", False), ("0", True), ("", True)]
)
def test_the_variable_forces_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, compiled: bool
) -> None:
    _tree(tmp_path)
    monkeypatch.setenv(extensions.DISABLE, value)
    finder, state = choose(tmp_path)
    assert (finder is not None) is compiled
    assert compiled or state == "pure Python (CALLMESH_NO_EXTENSIONS is set)"


def test_the_finder_answers_compiled_modules_and_the_rest_of_their_packages(
    tmp_path: Path,
) -> None:
    finder = CompiledFinder(tmp_path, _tree(tmp_path))
    package = finder.find_spec("pkg", None)
    assert package is not None and package.origin is not None
    assert Path(package.origin).parent == tmp_path / EXT / "pkg"
    assert package.submodule_search_locations == [str(tmp_path / "pkg")]
    hot = finder.find_spec("pkg.hot", None)
    assert hot is not None and hot.origin == str(
        tmp_path / EXT / "pkg" / ("hot" + extensions.interpreter())
    )
    assert hot.submodule_search_locations is None
    # A compiled package's __path__ is the build's directory: its pure modules come from the source.
    cold = finder.find_spec("pkg.cold", None)
    assert cold is not None and cold.origin == str(tmp_path / "pkg" / "cold.py")
    assert finder.find_spec("pkg.absent", None) is None
    assert finder.find_spec("other", None) is None


def test_this_process_runs_the_build_it_names() -> None:
    """Compiled in `make test`'s first pass, pure Python in its second: the state says which."""
    where = Path(shared.sip.message.__file__ or "")
    if extensions.STATE.startswith("compiled"):
        assert where.is_relative_to(extensions.ROOT / EXT) and where.suffix == ".so"
    else:
        assert where == extensions.ROOT / "shared" / "sip" / "message.py"
