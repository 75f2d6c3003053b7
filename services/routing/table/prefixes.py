"""Longest-prefix match over digit strings at a cost that does not grow with the table.

Why this shape: probing a number's prefixes one length at a time in one big dict
costs a cache miss per probe once the table is large (12 probes for an 11-digit
number). Here every prefix of up to ``head`` digits is expanded ("leaf-pushed")
into a flat list indexed by the number's first ``head`` digits as an integer, so
a lookup is one list index and, only for heads that have longer prefixes, one or
two probes of that head's small :class:`Deep` node. ``head`` follows the table's
size (10**head slots for about as many prefixes: memory stays proportional), and
a 4-prefix table runs exactly the same steps as a million-prefix one.

Values are opaque to the table; :meth:`PrefixTable.chain` walks shorter prefixes
for callers whose best value turned out unusable (a rule outside its time window).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_HEAD = 6
"""10**6 slots (8 MB) cap the flat part; longer prefixes live in per-head nodes."""


class Deep(Generic[V]):
    """The prefixes longer than ``head`` under one head, as (rest, value) pairs longest first.

    Pairs rather than a dict: most heads hold one or two, and a million rules
    make hundreds of thousands of nodes, where a dict each would cost ~130 bytes more.
    """

    __slots__ = ("fallback", "pairs")

    def __init__(self, fallback: V | None, pairs: tuple[tuple[str, V], ...] = ()) -> None:
        self.fallback = fallback
        self.pairs = pairs

    def find(self, rest: str) -> V | None:
        for key, value in self.pairs:
            if rest.startswith(key):
                return value
        return self.fallback

    def set(self, rest: str, value: V | None) -> None:
        rests = dict(self.pairs)
        if value is None:
            rests.pop(rest, None)
        else:
            rests[rest] = value
        self.pairs = _longest_first(rests)


class PrefixTable(Generic[V]):
    """Digit prefix → value; :meth:`find` gives the value of the longest prefix of a number.

    ``length_of`` tells which prefix a value belongs to (its length), so slots can
    be updated in place when a prefix comes or goes.
    """

    def __init__(self, length_of: Callable[[V], int], expected: int = 0) -> None:
        self._length_of = length_of
        self._exact: dict[str, V] = {}
        self._head = _head_for(expected)
        self._slots: list[V | Deep[V] | None] = [None] * 10**self._head

    def __len__(self) -> int:
        return len(self._exact)

    def get(self, prefix: str) -> V | None:
        return self._exact.get(prefix)

    def items(self) -> Iterator[tuple[str, V]]:
        return iter(self._exact.items())

    # -- lookups -------------------------------------------------------------

    def find(self, digits: str) -> V | None:
        """The value of the longest prefix of ``digits`` (ASCII digits only, no ``+``)."""
        head = self._head
        if len(digits) < head:
            return self._probe(digits, len(digits))
        slot = self._slots[int(digits[:head])]
        if type(slot) is Deep:
            return slot.find(digits[head:])
        return slot  # type: ignore[return-value]

    def chain(self, digits: str, below: int) -> Iterator[V]:
        """Values of the prefixes of ``digits`` shorter than ``below``, longest first."""
        exact = self._exact
        for length in range(min(below, len(digits) + 1) - 1, -1, -1):
            found = exact.get(digits[:length])
            if found is not None:
                yield found

    def _probe(self, digits: str, longest: int) -> V | None:
        return next(self.chain(digits, longest + 1), None)

    # -- changes -------------------------------------------------------------

    def bulk(self, entries: Iterable[tuple[str, V]]) -> None:
        """Load many prefixes at once (the table must be empty): one pass, no per-slot checks."""
        self._exact.update(entries)
        self._head = _head_for(len(self._exact))
        self._rebuild()

    def set(self, prefix: str, value: V | None) -> None:
        """Make ``value`` the prefix's value, or remove the prefix when ``value`` is None."""
        if value is None:
            if self._exact.pop(prefix, None) is None:
                return
        else:
            self._exact[prefix] = value
            if _head_for(len(self._exact)) > self._head:
                self._head += 1
                self._rebuild()
                return
        head = self._head
        if len(prefix) > head:
            self._set_deep(prefix, value)
        else:
            self._set_flat(prefix, value)

    def _set_deep(self, prefix: str, value: V | None) -> None:
        position = int(prefix[: self._head])
        slot = self._slots[position]
        if type(slot) is Deep:
            node: Deep[V] = slot
        elif value is None:
            return
        else:
            node = Deep(slot)  # type: ignore[arg-type]
            self._slots[position] = node
        node.set(prefix[self._head :], value)
        if not node.pairs:
            self._slots[position] = node.fallback

    def _set_flat(self, prefix: str, value: V | None) -> None:
        """Repoint the slots under ``prefix`` that it owns (their best prefix is no longer)."""
        length = len(prefix)
        if value is None:
            value = self._probe(prefix, length - 1)
        span = 10 ** (self._head - length)
        start = int(prefix) * span if prefix else 0
        slots, owner = self._slots, self._owner
        for position in range(start, start + span):
            slot = slots[position]
            if type(slot) is Deep:
                if owner(slot.fallback) <= length:
                    slot.fallback = value
            elif owner(slot) <= length:  # type: ignore[arg-type]
                slots[position] = value

    def _owner(self, value: V | None) -> int:
        return -1 if value is None else self._length_of(value)

    def _rebuild(self) -> None:
        head = self._head
        slots: list[V | Deep[V] | None] = [None] * 10**head
        deep: dict[int, dict[str, V]] = {}
        for prefix, value in sorted(self._exact.items(), key=_by_length):
            if len(prefix) <= head:
                span = 10 ** (head - len(prefix))
                start = int(prefix) * span if prefix else 0
                slots[start : start + span] = [value] * span
            else:
                deep.setdefault(int(prefix[:head]), {})[prefix[head:]] = value
        for position, rests in deep.items():
            slots[position] = Deep(slots[position], _longest_first(rests))  # type: ignore[arg-type]
        self._slots = slots


def _head_for(prefixes: int) -> int:
    """About one slot per prefix, at least 1 digit, at most :data:`MAX_HEAD`."""
    return min(MAX_HEAD, max(1, math.ceil(math.log10(prefixes + 1))))


def _longest_first(rests: dict[str, V]) -> tuple[tuple[str, V], ...]:
    return tuple(sorted(rests.items(), key=_by_length, reverse=True))


def _by_length(item: tuple[str, object]) -> int:
    return len(item[0])
