"""Branch, tag and Call-ID generation (RFC 3261 §8.1.1.7, §19.3).

Random identifiers come from `os.urandom` (cheap, unguessable, unique across
restarts and processes); a stateless proxy instead derives its branch from
the incoming request so retransmissions map to the same branch (§16.11).
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

MAGIC_COOKIE: Final = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 96 random bits."""
    return MAGIC_COOKIE + os.urandom(12).hex()


def derived_branch(*parts: str) -> str:
    """A branch that is a pure function of `parts` (e.g. the incoming top branch and target)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).hexdigest()
    return MAGIC_COOKIE + digest


def is_rfc3261_branch(branch: str | None) -> bool:
    """True if `branch` carries the magic cookie, so it alone identifies the transaction."""
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7


def new_tag() -> str:
    """A From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return os.urandom(8).hex()


def new_call_id(host: str | None = None) -> str:
    """A globally unique Call-ID; `host` is appended as `@host` when given."""
    local = os.urandom(16).hex()
    return local if host is None else f"{local}@{host}"
