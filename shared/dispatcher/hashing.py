"""Hashing that gives the same answer in every process and on every restart.

Python's ``hash()`` of a string is salted per process, so two edges would send
one Call-ID to two different boxes; blake2b is stable and fast enough for one
call per destination per request.
"""

from __future__ import annotations

import hashlib
import math

_SCALE = float(1 << 64)


def unit_hash(key: str, member: str) -> float:
    """A stable, uniform value in (0, 1) for the pair (key, member)."""
    digest = hashlib.blake2b(f"{key}\x00{member}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def rendezvous_score(key: str, member: str, weight: int) -> float:
    """Weighted rendezvous (highest random weight) score: the highest score wins ``key``.

    Why rendezvous rather than ``hash % n``: when a destination dies, only the
    keys it held move (to their second-best), every other key stays put; and
    the ranking is a ready-made failover order. ``weight / -ln(u)`` gives each
    member a share of keys proportional to its weight.
    """
    if weight <= 0:
        return 0.0
    return weight / -math.log(unit_hash(key, member))
