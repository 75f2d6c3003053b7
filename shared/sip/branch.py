"""Branch, tag and Call-ID generation (RFC 3261 §8.1.1.7, §19.3).

Random identifiers come from `os.urandom` (cheap, unguessable, unique across
restarts and processes).
"""

from __future__ import annotations

import os
from typing import Final

MAGIC_COOKIE: Final = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 96 random bits."""
    return MAGIC_COOKIE + os.urandom(12).hex()


def is_rfc3261_branch(branch: str | None) -> bool:
    """True if `branch` carries the magic cookie, so it alone identifies the transaction.

    A slice compared, not `startswith`, which parses its arguments from a tuple in
    CPython 3.11 (several times the cost): this runs for every request.
    """
    return branch is not None and branch[:7] == MAGIC_COOKIE and len(branch) > 7


def new_tag() -> str:
    """A From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return os.urandom(8).hex()


def new_call_id(host: str | None = None) -> str:
    """A globally unique Call-ID; `host` is appended as `@host` when given."""
    local = os.urandom(16).hex()
    return local if host is None else f"{local}@{host}"
