"""How a :class:`~shared.routing_table.prefixes.PrefixTable` packs its lookups into integers.

A *leaf* packs a prefix's code with its value's tag; a *slot* is two 64-bit
words (a head's leaf, then its one short longer prefix or a pointer to its
node); a *node* lists a head's longer prefixes as packed digits and lengths,
then their leaves.  The widths, masks and offsets of those fields, and the few
pure functions over them, are here; why the table is shaped this way is in
`shared.routing_table.prefixes`.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Final

from librt.vecs import vec
from mypy_extensions import i64

MAX_HEAD: Final = 6
"""10**6 slots (16 MB) cap the flat part; longer prefixes live in their head's slot or node."""

NONE = -1
"""The code of no prefix."""

TAG_BITS: Final = 16
TAG_MASK = (1 << TAG_BITS) - 1
FOUND = 1 << TAG_BITS
"""Set in :meth:`PrefixTable.match_tag`'s answer when a prefix matched."""
MAX_TAG = TAG_MASK
"""A larger tag is stored as 0, which callers take as "read the value"."""

CODE_BITS = 24
MAX_CODE = (1 << CODE_BITS) - 2
"""Codes (plus one) must fit a leaf's code field: 16 million prefixes, past memory."""

LEAF_BITS = TAG_BITS + CODE_BITS
LEAF_MASK = (1 << LEAF_BITS) - 1

FIRST: Final = 1
"""Where the slots start: a ``vec``'s items sit 8 bytes past a 16-byte boundary (its
buffer's header), and a slot on a 16-byte boundary never straddles two cache lines
(tested: were it to change, lookups would stay right, one in four slower)."""

SHORT_KEY = 5
"""Longest rest kept in a slot's second word (under 2**17, above a 4-bit length and a
leaf: 61 bits of an i64)."""
SHORT_LENGTH_MASK = 15
SHORT_SHIFT = LEAF_BITS + 4

TAKE = 18
"""Digits of a number read as one integer: 10**18 fits an i64."""
POWERS: Final[list[int]] = [10**n for n in range(TAKE + 1)]

LENGTH_BITS = 5
LENGTH_MASK = (1 << LENGTH_BITS) - 1
LONG_KEY = TAKE - MAX_HEAD
"""Longest rest compared as an integer (read from the number's first :data:`TAKE`
digits); longer ones, rare in practice (the head takes 6 digits), are compared as
strings kept beside the node."""


def leaf_code(leaf: int) -> int:
    """The code a leaf answers (:data:`NONE` for the empty leaf, 0)."""
    return (leaf >> TAG_BITS) - 1


def rest_is(value: i64, below: i64, length: i64, rest: i64) -> bool:
    """Whether the ``length`` digits after the head of ``value`` (a number's first
    digits, ``below`` of them past the head) are ``rest``."""
    return length <= below and value // POWERS[below - length] % POWERS[length] == rest


def empty_slots(head: int) -> vec[i64]:
    """Zeroed slots (empty heads) for ``head`` digits."""
    return vec[i64](repeat(0, FIRST + 2 * 10**head))


def head_for(prefixes: int) -> int:
    """About one slot per prefix, at least 1 digit, at most :data:`MAX_HEAD`."""
    return min(MAX_HEAD, max(1, math.ceil(math.log10(prefixes + 1))))
