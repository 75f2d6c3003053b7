"""Longest-prefix match over digit strings at a cost that does not grow with the table.

Why this shape: probing a number's prefixes one length at a time in one big dict
costs a cache miss per probe once the table is large (12 probes for an 11-digit
number). Here every prefix of up to ``head`` digits is expanded ("leaf-pushed")
into a flat array indexed by the number's first ``head`` digits as an integer, so
a lookup is one array index and, only for heads that have longer prefixes, a scan
of that head's few longer prefixes. ``head`` follows the table's size (10**head
slots for about as many prefixes: memory stays proportional), and a 4-prefix
table runs exactly the same steps as a million-prefix one.

Why packed: with a million prefixes, a per-slot Python object (and tuples of
pairs per head) costs a cache miss per pointer followed and ~100 bytes each.
Every prefix instead gets a small integer *code* (its value is ``values[code]``):
slots are a 4-byte ``array`` of codes, and the longer prefixes under a head are
one run of 8-byte words in a shared ``array`` (a node: a header word with the
count and the fallback code, then one word per prefix packing its digits as an
integer, its length and its code), usually one cache line. One word per prefix,
not three, keeps the nodes of a million prefixes at 8 MB instead of 20: past
a few megabytes every random read goes to memory (``python -m bench.routing``
prints what a read costs by size). Replacing a prefix's value touches neither:
only ``values[code]`` changes.

Values are opaque to the table, but each gets a small integer *tag* from the
caller (``tag_of``), kept in an array beside the codes: a caller can learn what
it needs of the value from :meth:`PrefixTable.code` and :attr:`~PrefixTable.tags`
without touching the value itself, a cold object in a big table.
:meth:`PrefixTable.chain` walks shorter prefixes for callers whose best value
turned out unusable (a rule outside its time window).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_HEAD = 6
"""10**6 slots (4 MB) cap the flat part; longer prefixes live in per-head nodes."""

NONE = -1
"""Slot code: no prefix covers these digits. Codes below it point at a node (``-2 - offset``)."""

MAX_TAG = 0xFFFF
"""Tags are 2 bytes (a 2 MB array for a million prefixes stays in cache, 4 bytes did not:
measured); a larger tag is stored as 0, which callers take as "read the value"."""

LONG_KEY = 9
"""Longest rest compared as an integer (its bits above a word's length and code keep the
word under 2**62, an unboxed integer for mypyc); longer ones, rare in practice (the head
takes 6 digits), are compared as strings kept beside the node."""

_CODE_BITS = 27
_CODE_MASK = (1 << _CODE_BITS) - 1
MAX_CODE = _CODE_MASK
"""Codes must fit a node word's code field: 134 million prefixes, far past memory."""
_LENGTH_MASK = 31
_REST_SHIFT = 32
_COUNT_BITS = 24
_COUNT_MASK = (1 << _COUNT_BITS) - 1


class PrefixTable(Generic[V]):
    """Digit prefix → value; :meth:`find` gives the value of the longest prefix of a number.

    ``values[code]`` and ``tags[code]`` are the value and tag of the prefix with
    that code (see :meth:`code`); they change in place when the table does.
    """

    def __init__(self, tag_of: Callable[[V], int] | None = None) -> None:
        self._tag_of = tag_of
        self._codes: dict[str, int] = {}
        self.values: list[V | None] = []
        self.tags: array[int] = array("H")
        self._lengths: array[int] = array("b")
        """Prefix length per code (-1 for a free code): which slots a prefix owns."""
        self._free: list[int] = []
        self._head = _head_for(0)
        self._slots: array[int] = array("i", [NONE]) * 10**self._head
        self._nodes: array[int] = array("q")
        self._long: dict[int, str] = {}
        """Node word position → the rest, for rests longer than :data:`LONG_KEY` digits."""
        self._wasted = 0

    def __len__(self) -> int:
        return len(self._codes)

    def get(self, prefix: str) -> V | None:
        code = self._codes.get(prefix)
        return None if code is None else self.values[code]

    # -- lookups -------------------------------------------------------------

    def find(self, digits: str) -> V | None:
        """The value of the longest prefix of ``digits`` (ASCII digits only, no ``+``)."""
        code = self.code(digits)
        return None if code == NONE else self.values[code]

    def code(self, digits: str) -> int:
        """The code of the longest prefix of ``digits`` (ASCII digits), or :data:`NONE`."""
        head = self._head
        if len(digits) < head:
            return self._best_code(digits, len(digits))
        code = self._slots[int(digits[:head])]
        if code < NONE:
            nodes = self._nodes
            at = -2 - code
            header = nodes[at]
            code = (header >> _COUNT_BITS) - 1
            left = len(digits) - head
            for word in range(at + 1, at + 1 + (header & _COUNT_MASK)):
                entry = nodes[word]
                length = (entry >> _CODE_BITS) & _LENGTH_MASK
                if length <= left and (
                    int(digits[head : head + length]) == entry >> _REST_SHIFT
                    if length <= LONG_KEY
                    else digits.startswith(self._long[word], head)
                ):
                    code = entry & _CODE_MASK
                    break
        return code

    def chain(self, digits: str, below: int) -> Iterator[V]:
        """Values of the prefixes of ``digits`` shorter than ``below``, longest first."""
        codes, values = self._codes, self.values
        for length in range(min(below, len(digits) + 1) - 1, -1, -1):
            code = codes.get(digits[:length])
            if code is not None:
                yield values[code]  # type: ignore[misc]

    def _best_code(self, digits: str, longest: int) -> int:
        """The code of the longest prefix of ``digits`` of at most ``longest`` digits."""
        codes = self._codes
        for length in range(min(longest, len(digits)), -1, -1):
            code = codes.get(digits[:length])
            if code is not None:
                return code
        return NONE

    # -- changes -------------------------------------------------------------

    def bulk(
        self, entries: Iterable[tuple[str, V]], combine: Callable[[V, V], V] | None = None
    ) -> None:
        """Load many prefixes at once (the table must be empty): one pass, no per-slot checks.

        A prefix given again replaces its value, or is merged with it by ``combine``.
        """
        if self._codes:
            raise ValueError("bulk needs an empty table")
        codes, values = self._codes, self.values
        for prefix, value in entries:
            code = codes.get(prefix)
            if code is None:
                codes[prefix] = self._new_code(prefix, value)
            else:
                old = values[code]
                values[code] = value if combine is None or old is None else combine(old, value)
                self._tag(code)
        self._head = _head_for(len(self._codes))
        self._rebuild()

    def set(self, prefix: str, value: V | None) -> None:
        """Make ``value`` the prefix's value, or remove the prefix when ``value`` is None."""
        code = self._codes.get(prefix)
        if value is None:
            if code is not None:
                self._remove(prefix, code)
        elif code is not None:
            self.values[code] = value
            self._tag(code)
        else:
            code = self._codes[prefix] = self._new_code(prefix, value)
            if _head_for(len(self._codes)) > self._head:
                self._head += 1
                self._rebuild()
            elif len(prefix) > self._head:
                self._edit_node(prefix, code, add=True)
            else:
                self._cover(prefix, code)

    def _new_code(self, prefix: str, value: V) -> int:
        if self._free:
            code = self._free.pop()
            self.values[code] = value
            self._lengths[code] = len(prefix)
        else:
            code = len(self.values)
            if code > MAX_CODE:
                raise OverflowError(f"a prefix table holds at most {MAX_CODE + 1} prefixes")
            self.values.append(value)
            self._lengths.append(len(prefix))
            self.tags.append(0)
        self._tag(code)
        return code

    def _tag(self, code: int) -> None:
        value = self.values[code]
        tag = 0 if self._tag_of is None or value is None else self._tag_of(value)
        self.tags[code] = tag if tag <= MAX_TAG else 0

    def _remove(self, prefix: str, code: int) -> None:
        del self._codes[prefix]
        if len(prefix) > self._head:
            self._edit_node(prefix, code, add=False)
        else:
            self._repoint(prefix, code, self._best_code(prefix, len(prefix) - 1))
        self.values[code] = None
        self.tags[code] = 0
        self._lengths[code] = -1
        self._free.append(code)

    def _span(self, prefix: str) -> range:
        span = 10 ** (self._head - len(prefix))
        start = int(prefix) * span if prefix else 0
        return range(start, start + span)

    def _cover(self, prefix: str, code: int) -> None:
        """A new prefix of at most ``head`` digits takes the slots whose best prefix is shorter."""
        slots, nodes, lengths, length = self._slots, self._nodes, self._lengths, len(prefix)
        for position in self._span(prefix):
            slot = slots[position]
            if slot < NONE:
                fallback = _fallback(nodes, -2 - slot)
                if fallback == NONE or lengths[fallback] < length:
                    _set_fallback(nodes, -2 - slot, code)
            elif slot == NONE or lengths[slot] < length:
                slots[position] = code

    def _repoint(self, prefix: str, old: int, new: int) -> None:
        """The slots (and node fallbacks) under ``prefix`` that ``old`` owned go to ``new``."""
        slots, nodes = self._slots, self._nodes
        for position in self._span(prefix):
            slot = slots[position]
            if slot == old:
                slots[position] = new
            elif slot < NONE and _fallback(nodes, -2 - slot) == old:
                _set_fallback(nodes, -2 - slot, new)

    def _edit_node(self, prefix: str, code: int, *, add: bool) -> None:
        """Rewrite the node of ``prefix``'s head with the prefix added or removed.

        The new node goes at the end of the shared array; the old words are
        garbage until the next rebuild, which happens once they are half of it.
        """
        head = self._head
        position = int(prefix[:head])
        slot = self._slots[position]
        if slot < NONE:
            fallback, rests = self._node_at(-2 - slot)
            self._wasted += 1 + len(rests)
        else:
            fallback, rests = slot, {}
        if add:
            rests[prefix[head:]] = code
        else:
            rests.pop(prefix[head:], None)
        self._slots[position] = self._append_node(fallback, rests) if rests else fallback
        if self._wasted * 2 > len(self._nodes):
            self._rebuild()

    def _node_at(self, at: int) -> tuple[int, dict[str, int]]:
        nodes = self._nodes
        rests: dict[str, int] = {}
        for word in range(at + 1, at + 1 + (nodes[at] & _COUNT_MASK)):
            entry = nodes[word]
            length = (entry >> _CODE_BITS) & _LENGTH_MASK
            if length > LONG_KEY:
                rest = self._long.pop(word)
            else:
                rest = f"{entry >> _REST_SHIFT:0{length}d}"
            rests[rest] = entry & _CODE_MASK
        return _fallback(nodes, at), rests

    def _append_node(self, fallback: int, rests: dict[str, int]) -> int:
        """Store a node (rests longest-first in effect: reverse lexical order, see below)."""
        nodes = self._nodes
        at = len(nodes)
        if len(rests) > _COUNT_MASK:
            raise OverflowError(f"at most {_COUNT_MASK} prefixes share a head")
        nodes.append((fallback + 1) << _COUNT_BITS | len(rests))
        # Of the rests a number can match, each is a prefix of the next longer one, and
        # a string sorts before its extensions: reverse order tries the longest first.
        for rest in sorted(rests, reverse=True):
            length = min(len(rest), _LENGTH_MASK)
            if len(rest) > LONG_KEY:
                self._long[len(nodes)] = rest
                nodes.append(length << _CODE_BITS | rests[rest])
            else:
                nodes.append(int(rest) << _REST_SHIFT | length << _CODE_BITS | rests[rest])
        return -2 - at

    def _rebuild(self) -> None:
        """Slots and nodes afresh from the codes (values and codes stay as they are)."""
        head = self._head
        slots: array[int] = array("i", [NONE]) * 10**head
        self._nodes, self._long, self._wasted = array("q"), {}, 0
        short = sorted((p for p in self._codes if len(p) <= head), key=len)
        codes = self._codes
        for prefix in short:
            span = self._span(prefix)
            if len(span) == 1:
                slots[span.start] = codes[prefix]
            else:
                slots[span.start : span.stop] = array("i", [codes[prefix]]) * len(span)
        del short
        deep = sorted((p for p in codes if len(p) > head), reverse=True)
        for heading, group in groupby(deep, key=lambda prefix: prefix[:head]):
            position = int(heading)
            rests = {prefix[head:]: codes[prefix] for prefix in group}
            slots[position] = self._append_node(slots[position], rests)
        self._slots = slots


def _fallback(nodes: array[int], at: int) -> int:
    """The code of the node's head itself (its best prefix of at most ``head`` digits)."""
    return (nodes[at] >> _COUNT_BITS) - 1


def _set_fallback(nodes: array[int], at: int, code: int) -> None:
    nodes[at] = (code + 1) << _COUNT_BITS | nodes[at] & _COUNT_MASK


def _head_for(prefixes: int) -> int:
    """About one slot per prefix, at least 1 digit, at most :data:`MAX_HEAD`."""
    return min(MAX_HEAD, max(1, math.ceil(math.log10(prefixes + 1))))
