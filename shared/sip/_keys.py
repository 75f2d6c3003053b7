"""Where a header is in a message: its key looked up in the model's list of keys.

The model keeps a message's header fields as two parallel lists, keys and raw
lines (`_model`), and finds a header by its key about 180 times per call
through the proxy (113 `index`, 68 `count` in `bench.proxy.core_calls`, its own
messages' building included).  `list.index` and `list.count` compare every key they pass
through `PyObject_RichCompare` (about ninety instructions each), although the
keys are the memo's interned strings (`headers.KEY_MEMO`): the compiled build
answers the same in C (`_scan.key_index`, `_scan.key_count`), by identity and
the strings' cached hashes first.  Pure Python calls the list methods
themselves: a function of ours around them cost it ~4 % more instructions per
call (a frame per lookup).  `tests/shared/sip/test_keys.py` holds the two to
one answer.
"""

from __future__ import annotations

from typing import Final, Protocol


class KeyIndex(Protocol):
    """`list.index`'s call: where `key` is first from `start` on, else `ValueError`."""

    def __call__(self, keys: list[str], key: str, start: int = 0, /) -> int: ...


class KeyCount(Protocol):
    """`list.count`'s call: how many times `key` is in `keys` (a header's lines)."""

    def __call__(self, keys: list[str], key: str, /) -> int: ...


def _lookups() -> tuple[KeyIndex, KeyCount]:
    """The C lookups (`_scan.c`) if this process loaded the compiled build, else the list's."""
    try:
        from shared.sip._scan import key_count, key_index
    except ImportError:
        return list.index, list.count
    return key_index, key_count


_LOOKUPS: Final = _lookups()
key_index: Final = _LOOKUPS[0]
"""`list.index`, or the same in C."""
key_count: Final = _LOOKUPS[1]
"""`list.count`, or the same in C."""
