"""`# fmt: skip` only with its reason on the same line.

The formatter decides layout; a line that overrules it says why (a table kept as
rows, arguments grouped by meaning), or a reader cannot tell whether the skip
still earns its place.  The reason is a comment before the marker or text after it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("shared", "services", "tests", "bench", "deploy")
MARKER = "# fmt: skip"


def has_reason(line: str) -> bool:
    before, _, after = line.partition(MARKER)
    comment_before = any(part.strip() for part in before.split("#")[1:])
    return comment_before or bool(after.strip())


def skips_without_reason(root: Path) -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if MARKER in line and not has_reason(line):
                    found.append(f"{path.relative_to(root)}:{number}")
    return found


def test_every_fmt_skip_says_why() -> None:
    assert skips_without_reason(ROOT) == []


def test_the_check_finds_a_bare_skip(tmp_path: Path) -> None:
    """Positive control: a bare marker is reported; one with a reason, before or after, is not."""
    (tmp_path / "shared").mkdir()
    marker = "# fmt: " + "skip"  # split so this file's own lines are not markers
    (tmp_path / "shared" / "a.py").write_text(
        f"x = (1,  2)  {marker}\n"
        f"y = (1,  2)  # a pair kept on one line  {marker}\n"
        f"z = (1,  2)  {marker}  (a pair kept on one line)\n"
    )
    assert skips_without_reason(tmp_path) == ["shared/a.py:1"]
