"""The hash inside the edge's Via branches in C (`_branches.c`), only in the compiled build."""

from collections.abc import Sequence

def branch_hash(parts: Sequence[str], /) -> str:
    """BLAKE2b (8 bytes) of ``parts`` (a list or tuple) joined by NUL, as 16 hex digits."""
