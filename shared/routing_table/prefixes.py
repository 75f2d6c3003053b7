"""Longest-prefix match over digit strings at a cost that does not grow with the table.

Why this shape: probing a number's prefixes one length at a time in one big dict
costs a cache miss per probe once the table is large (12 probes for an 11-digit
number). Here every prefix of up to ``head`` digits is expanded ("leaf-pushed")
into a flat array of slots indexed by the number's first ``head`` digits as an
integer; the few longer prefixes under a head are kept with its slot. ``head``
follows the table's size (10**head slots for about as many prefixes: memory
stays proportional), and a 4-prefix table runs exactly the same steps as a
million-prefix one: the number's first digits are read as one integer, once,
and every comparison after that is arithmetic on it.

Why packed: with a million prefixes, a per-slot Python object costs a cache
miss per pointer followed and ~100 bytes. Every prefix instead gets a small
integer *code* (its value is ``values[code]``), and the answer of a lookup is a
*leaf*: one integer packing the code with the value's *tag*, a small integer the
caller derives from the value (``tag_of``) so that it can act on a lookup
without touching the value, a cold object in a big table.

Why a slot is two words: past a few megabytes every random read goes to memory
(``python -m bench.routing`` prints what one costs by size), and what a lookup
pays with a million prefixes over four is those reads. A slot holds its head's
own leaf and, in its second word, the head's one longer prefix when it has just
one of at most five more digits (nine heads in ten of a million random prefixes
with a 6-digit head have at most one): a lookup reads one 16-byte slot, one
cache line. Heads with more longer prefixes point to a *node* in a shared array
(their count, one word per prefix packing its digits and length, then their
leaves), a second read for about one number in ten.

Why ``librt``'s ``vec[i64]`` (mypyc's runtime library) for slots and nodes: compiled,
reading one of its words is a load, where an ``array`` or ``memoryview`` item
goes through the generic item protocol and boxes an integer (about 50 ns a
read: a node scan cost more than its cache miss). Uncompiled, it is an ordinary
extension type.

The price is paid on changes: a value whose tag changes has its leaves rewritten
(every slot a short prefix covers); a value replaced with the same tag touches
nothing but ``values[code]``. :meth:`PrefixTable.chain` walks shorter prefixes
for callers whose best value turned out unusable (a rule outside its time window).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Generic, TypeVar

from librt.vecs import append, extend, vec
from mypy_extensions import i64

from shared.routing_table.prefix_layout import (
    FIRST,
    FOUND,
    LEAF_BITS,
    LEAF_MASK,
    LENGTH_BITS,
    LENGTH_MASK,
    LONG_KEY,
    MAX_CODE,
    MAX_TAG,
    NONE,
    POWERS,
    SHORT_KEY,
    SHORT_LENGTH_MASK,
    SHORT_SHIFT,
    TAG_BITS,
    TAG_MASK,
    TAKE,
    empty_slots,
    head_for,
    leaf_code,
    rest_is,
)

V = TypeVar("V")


class PrefixTable(Generic[V]):
    """Digit prefix → value; :meth:`leaf` answers the longest prefix of a number.

    ``values[code]`` is the value of the prefix with that code (see :func:`leaf_code`);
    it changes in place when the table does.
    """

    def __init__(self, tag_of: Callable[[V], int] | None = None) -> None:
        self._tag_of = tag_of
        self._codes: dict[str, int] = {}
        self.values: list[V | None] = []
        self._tags: array[int] = array("H")
        self._lengths: array[int] = array("b")
        """Prefix length per code (-1 for a free code): which slots a prefix owns."""
        self._free: list[int] = []
        self._head = head_for(0)
        self._slots = empty_slots(self._head)
        """Two words per head: its leaf shifted left by one, the low bit set when it has
        longer prefixes; then 0, its one longer prefix (``rest``, length, leaf), or
        ``~at`` for its node at ``at``."""
        self._nodes: vec[i64] = vec[i64]()
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
        code = leaf_code(self.leaf(digits))
        return None if code == NONE else self.values[code]

    def match_tag(self, digits: str) -> int:
        """The tag of the longest prefix of ``digits`` plus :data:`FOUND`, or 0 when no
        prefix matches.

        Why not the leaf: a big table's leaves are large integers, which the
        interpreter handles more slowly than a small table's (measured: +20-35 ns a
        lookup); this answer is small whatever the table's size.
        """
        leaf = self.leaf(digits)
        return leaf & TAG_MASK | FOUND if leaf else 0

    def leaf(self, digits: str) -> int:
        """The leaf of the longest prefix of ``digits`` (ASCII digits): its code above
        :data:`TAG_BITS` (plus one), its tag below; 0 when no prefix matches.

        Why the number is read as one integer: a string slice and ``int()`` per
        comparison cost more than the memory reads, and more with longer heads.
        """
        head = self._head
        size = len(digits)
        if size < head:
            return self._best_leaf(digits, size)
        below = (size if size < TAKE else TAKE) - head  # digits read past the head
        value: i64 = int(digits[: head + below])
        slot: i64 = value // POWERS[below] * 2 + FIRST
        slots = self._slots
        word = slots[slot]
        if not word & 1:
            return word >> 1
        deeper = slots[slot + 1]
        if deeper > 0:
            length = deeper >> LEAF_BITS & SHORT_LENGTH_MASK
            if rest_is(value, below, length, deeper >> SHORT_SHIFT):
                return deeper & LEAF_MASK
            return word >> 1
        nodes = self._nodes
        at = ~deeper
        count = nodes[at]
        for entry in range(at + 1, at + 1 + count):
            match = nodes[entry]
            length = match & LENGTH_MASK
            if length <= LONG_KEY:
                if rest_is(value, below, length, match >> LENGTH_BITS):
                    return nodes[entry + count]
            elif digits.startswith(self._long[entry], head):
                return nodes[entry + count]
        return word >> 1

    def chain(self, digits: str, below: int) -> Iterator[V]:
        """Values of the prefixes of ``digits`` shorter than ``below``, longest first."""
        codes, values = self._codes, self.values
        for length in range(min(below, len(digits) + 1) - 1, -1, -1):
            code = codes.get(digits[:length])
            if code is not None:
                yield values[code]  # type: ignore[misc]

    def _best_leaf(self, digits: str, longest: int) -> int:
        """The leaf of the longest prefix of ``digits`` of at most ``longest`` digits."""
        codes = self._codes
        for length in range(min(longest, len(digits)), -1, -1):
            code = codes.get(digits[:length])
            if code is not None:
                return self._leaf_of(code)
        return 0

    def _leaf_of(self, code: int) -> int:
        return 0 if code == NONE else (code + 1) << TAG_BITS | self._tags[code]

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
        self._head = head_for(len(self._codes))
        self._rebuild()

    def set(self, prefix: str, value: V | None) -> None:
        """Make ``value`` the prefix's value, or remove the prefix when ``value`` is None."""
        code = self._codes.get(prefix)
        if value is None:
            if code is not None:
                self._remove(prefix, code)
        elif code is not None:
            self.values[code] = value
            if self._tag(code):
                self._restamp(prefix, code)
        else:
            code = self._codes[prefix] = self._new_code(prefix, value)
            if head_for(len(self._codes)) > self._head:
                self._head += 1
                self._rebuild()
            elif len(prefix) > self._head:
                self._edit_deeper(prefix, code, add=True)
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
            self._tags.append(0)
        self._tag(code)
        return code

    def _tag(self, code: int) -> bool:
        """Tag the code's value; whether its tag changed."""
        value = self.values[code]
        tag = 0 if self._tag_of is None or value is None else self._tag_of(value)
        tag = tag if tag <= MAX_TAG else 0
        changed = self._tags[code] != tag
        self._tags[code] = tag
        return changed

    def _restamp(self, prefix: str, code: int) -> None:
        """Rewrite the leaves of ``prefix`` (code ``code``) after its tag changed."""
        if len(prefix) <= self._head:
            self._repoint(prefix, code, code)
        else:
            self._edit_deeper(prefix, code, add=True)

    def _remove(self, prefix: str, code: int) -> None:
        del self._codes[prefix]
        if len(prefix) > self._head:
            self._edit_deeper(prefix, code, add=False)
        else:
            shorter = leaf_code(self._best_leaf(prefix, len(prefix) - 1))
            self._repoint(prefix, code, shorter)
        self.values[code] = None
        self._tags[code] = 0
        self._lengths[code] = -1
        self._free.append(code)

    def _span(self, prefix: str) -> range:
        """The slots' first words under ``prefix``."""
        span = 10 ** (self._head - len(prefix))
        start = int(prefix) * span if prefix else 0
        return range(2 * start + FIRST, 2 * (start + span) + FIRST, 2)

    def _cover(self, prefix: str, code: int) -> None:
        """A new prefix of at most ``head`` digits takes the slots whose best prefix is shorter."""
        slots, lengths, length = self._slots, self._lengths, len(prefix)
        word = self._leaf_of(code) << 1
        for slot in self._span(prefix):
            owner = leaf_code(slots[slot] >> 1)
            if owner == NONE or lengths[owner] < length:
                slots[slot] = word | slots[slot] & 1

    def _repoint(self, prefix: str, old: int, new: int) -> None:
        """The slots under ``prefix`` that ``old`` owned go to ``new``."""
        slots = self._slots
        word = self._leaf_of(new) << 1
        for slot in self._span(prefix):
            if leaf_code(slots[slot] >> 1) == old:
                slots[slot] = word | slots[slot] & 1

    def _edit_deeper(self, prefix: str, code: int, *, add: bool) -> None:
        """The longer prefixes of ``prefix``'s head with ``prefix`` added or removed."""
        head = self._head
        position = int(prefix[:head])
        rests = self._deeper(position)
        if add:
            rests[prefix[head:]] = code
        else:
            rests.pop(prefix[head:], None)
        self._set_deeper(position, rests)
        if self._wasted * 2 > len(self._nodes):
            self._rebuild()

    def _deeper(self, position: int) -> dict[str, int]:
        """The longer prefixes of head ``position``: rest → code (its node becomes garbage)."""
        slots = self._slots
        first = 2 * position + FIRST
        if not slots[first] & 1:
            return {}
        deeper = slots[first + 1]
        if deeper > 0:
            length = deeper >> LEAF_BITS & SHORT_LENGTH_MASK
            return {f"{deeper >> SHORT_SHIFT:0{length}d}": leaf_code(deeper & LEAF_MASK)}
        nodes, at = self._nodes, ~deeper
        count = nodes[at]
        rests: dict[str, int] = {}
        for entry in range(at + 1, at + 1 + count):
            match = nodes[entry]
            length = match & LENGTH_MASK
            if length > LONG_KEY:
                rest = self._long.pop(entry)
            else:
                rest = f"{match >> LENGTH_BITS:0{length}d}"
            rests[rest] = leaf_code(nodes[entry + count])
        self._wasted += 1 + 2 * count
        return rests

    def _set_deeper(self, position: int, rests: dict[str, int]) -> None:
        """Store the longer prefixes of head ``position``: in its slot, or in a new node
        (rests longest-first in effect: reverse lexical order, see below)."""
        slots = self._slots
        first = 2 * position + FIRST
        if not rests:
            slots[first] &= ~1
            slots[first + 1] = 0
            return
        slots[first] |= 1
        if len(rests) == 1:
            ((rest, code),) = rests.items()
            if len(rest) <= SHORT_KEY:
                leaf = self._leaf_of(code)
                slots[first + 1] = int(rest) << SHORT_SHIFT | len(rest) << LEAF_BITS | leaf
                return
        nodes = self._nodes
        slots[first + 1] = ~len(nodes)
        nodes = append(nodes, len(rests))
        # Of the rests a number can match, each is a prefix of the next longer one, and
        # a string sorts before its extensions: reverse order tries the longest first.
        ordered = sorted(rests, reverse=True)
        for rest in ordered:
            if len(rest) > LONG_KEY:
                self._long[len(nodes)] = rest
                nodes = append(nodes, min(len(rest), LENGTH_MASK))
            else:
                nodes = append(nodes, int(rest) << LENGTH_BITS | len(rest))
        self._nodes = extend(nodes, [self._leaf_of(rests[rest]) for rest in ordered])

    def _rebuild(self) -> None:
        """Slots and nodes afresh from the codes (values and codes stay as they are)."""
        head = self._head
        self._slots = slots = empty_slots(head)
        self._nodes, self._long, self._wasted = vec[i64](), {}, 0
        short = sorted((p for p in self._codes if len(p) <= head), key=len)
        codes = self._codes
        for prefix in short:
            word = self._leaf_of(codes[prefix]) << 1
            for slot in self._span(prefix):
                slots[slot] = word
        del short
        deep = sorted((p for p in codes if len(p) > head), reverse=True)
        for heading, group in groupby(deep, key=lambda prefix: prefix[:head]):
            self._set_deeper(int(heading), {prefix[head:]: codes[prefix] for prefix in group})
