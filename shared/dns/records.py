"""The DNS records RFC 3263 reads, as plain values, and their ordering rules.

NAPTR records are ordered by (order, preference) (RFC 3403 §4.1); SRV records by
priority, and within one priority by a weighted random draw (RFC 2782: each
remaining record is picked with a chance proportional to its weight, weight-0
ones having a small chance only when all are 0 or after the others).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str
    """The SRV name the record points at (RFC 3263 uses only the `s` flag and no regexp)."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str
    """A host name; `.` means the service is decidedly not available there (RFC 2782)."""


def order_naptr(records: tuple[Naptr, ...]) -> list[Naptr]:
    return sorted(records, key=lambda record: (record.order, record.preference))


def order_srv(records: tuple[Srv, ...], rng: random.Random) -> list[Srv]:
    """RFC 2782's order: ascending priority; within a priority, the weighted draw.

    The draw is uniform over [0, sum of the weights) and picks the first record
    whose running sum passes it, not RFC 2782's integer draw from 0 to the sum
    inclusive: with that one the first record wins one draw too many (weights 1
    and 2 would share calls 2:2, not 1:2). Weight-0 records thus come after the
    weighted ones of their priority, in the order given, which is what the RFC
    asks of them ("a very small chance of being selected") made exact.
    """
    ordered: list[Srv] = []
    by_priority: dict[int, list[Srv]] = {}
    for record in records:
        if record.target not in (".", ""):
            by_priority.setdefault(record.priority, []).append(record)
    for priority in sorted(by_priority):
        left = by_priority[priority]
        while left:
            total = sum(record.weight for record in left)
            if total == 0:
                ordered.extend(left)
                break
            draw = rng.random() * total
            running = 0
            for index, record in enumerate(left):
                running += record.weight
                if running > draw:
                    ordered.append(left.pop(index))
                    break
    return ordered
