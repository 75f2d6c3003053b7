"""The docs cite tests, name source files and link pages; each must exist.

Code moves (a module split, a test renamed) leave the prose behind; this
finds every `file.py::test_name` the pages name, every path of the tree in
backquotes (`services/edge/proxy/core.py`) and every relative link, so a
stale one fails here rather than misleading a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
CITED_TEST = re.compile(r"([\w./-]*test_\w+\.py)::(test_\w+)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
"""Inline code: a regular expression there (`[a-z](x|y)`) is no link."""
TREE_PATH = re.compile(r"`((?:shared|services|tests|bench|deploy|docs)/[^`\s:]*)")
PATTERN_MARKS = frozenset("{<*…$")
"""A path with these is a pattern (`services/<name>/`, `{index,prefixes}.py`), not a file."""


def cited_tests(text: str) -> list[tuple[str, str]]:
    return CITED_TEST.findall(text)


def defines_test(file: str, name: str, root: Path = ROOT) -> bool:
    """A test file ending in `file` (a path or just its name) defines `name`."""
    candidates = [p for p in (root / "tests").rglob(Path(file).name) if str(p).endswith(file)]
    pattern = re.compile(rf"^(async )?def {name}\(", re.MULTILINE)
    return any(pattern.search(path.read_text()) for path in candidates)


def broken_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(CODE_SPAN.sub("``", page.read_text()))
        if "://" not in target and not (page.parent / target).exists()
    ]


def missing_paths(text: str, root: Path = ROOT) -> list[str]:
    named = (path.rstrip(".,;") for path in TREE_PATH.findall(text))
    return [
        path
        for path in named
        if not PATTERN_MARKS.intersection(path) and not (root / path).exists()
    ]


def test_every_cited_test_exists() -> None:
    missing = [
        f"{page.relative_to(ROOT)}: {file}::{name}"
        for page in PAGES
        for file, name in cited_tests(page.read_text())
        if not defines_test(file, name)
    ]
    assert missing == []


def test_every_path_named_exists() -> None:
    assert sum(len(TREE_PATH.findall(page.read_text())) for page in PAGES) > 100  # it sees them
    missing = [
        f"{page.relative_to(ROOT)}: {path}"
        for page in PAGES
        for path in missing_paths(page.read_text())
    ]
    assert missing == []


def test_every_relative_link_leads_somewhere() -> None:
    broken = [
        f"{page.relative_to(ROOT)}: {target}" for page in PAGES for target in broken_links(page)
    ]
    assert broken == []


def test_the_checks_see_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "tests" / "a").mkdir(parents=True)
    (tmp_path / "tests" / "a" / "test_x.py").write_text("async def test_here() -> None:\n")
    text = "see `tests/a/test_x.py::test_here` and `test_x.py::test_gone`"
    assert cited_tests(text) == [("tests/a/test_x.py", "test_here"), ("test_x.py", "test_gone")]
    assert defines_test("tests/a/test_x.py", "test_here", tmp_path)
    assert defines_test("test_x.py", "test_here", tmp_path)
    assert not defines_test("test_x.py", "test_gone", tmp_path)
    assert not defines_test("b/test_x.py", "test_here", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](tests/a/test_x.py), [web](https://x.org/a), [gone](nowhere.md#part), `^[a](b)$`"
    )
    assert broken_links(page) == ["nowhere.md"]
    text = "`tests/a/test_x.py::test_here`, `tests/a/`, `services/<name>/`, `shared/gone.py`."
    assert missing_paths(text, tmp_path) == ["shared/gone.py"]
