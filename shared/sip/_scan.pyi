"""The message scan in C (`_scan.c`), present only in the compiled build."""

def scan_head(
    data: bytes, memo: dict[bytes, str], /
) -> tuple[bytes, list[str], list[bytes], int, int] | None:
    """Frame a plain message's head: (start line, keys, lines, where the body starts, the
    Content-Length, -1 without one), or None: the Python readers frame it instead."""

def field_value(line: bytes, /) -> str:
    """A raw header field line's value, exactly as `_fields.read_value` reads it (folds
    unfolded, blanks stripped, UTF-8 or `SipParseError`)."""

def key_index(keys: list[str], key: str, start: int = 0, /) -> int:
    """Where `key` is first in `keys` from `start` on, else `ValueError`: `list.index` (without
    its `stop`: a fourth argument is a `TypeError`)."""

def key_count(keys: list[str], key: str, /) -> int:
    """How many times `key` is in `keys`: `list.count`."""
