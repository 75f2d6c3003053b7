"""Our Via branch: unique per forwarded request, and carrying a loop-detection hash (§16.6 step 8).

The branch is `z9hG4bK` + `cm` + a 16-hex hash of the fields that stay
unchanged when a request loops back to us (Request-URI as received, From and
To tags, Call-ID, CSeq number, Route, Proxy-Require, Proxy-Authorization),
then `.` and a per-process unique suffix.  A request that arrives with one of
our own Vias whose hash equals the one we would compute now has looped (482);
a different hash means it spiralled (changed on the way) and may go on (§16.3 step 4).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Final

from shared.sip.branch import MAGIC_COOKIE, is_rfc3261_branch
from shared.sip.message import Request
from shared.sip.transport.destination import Destination

_PREFIX: Final = MAGIC_COOKIE + "cm"
_HASH_LENGTH: Final = 16


def _hash_in_python(parts: Sequence[str]) -> str:
    """The BLAKE2b hash of ``parts`` joined by NUL, as `_HASH_LENGTH` hex digits."""
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=_HASH_LENGTH // 2).hexdigest()


def _accelerator() -> ModuleType | None:
    """The C hash (`_branches.c`) if this process loaded the compiled build."""
    try:
        from services.edge.proxy import _branches
    except ImportError:
        return None
    return _branches


_C_HASH: Final = _accelerator()
_hash: Final[Callable[[Sequence[str]], str]] = (
    _hash_in_python if _C_HASH is None else _C_HASH.branch_hash
)
"""The hash of a branch's fields: in C in the compiled build (the same digits, five hashes a
call at a fraction of `hashlib`'s cost: `_branches.c`), else `_hash_in_python`."""


class BranchMaker:
    """Makes branches; a random stem per instance keeps them unique across restarts and workers."""

    __slots__ = ("_counter", "_stem")

    def __init__(self) -> None:
        self._stem = os.urandom(4).hex()
        self._counter = itertools.count(1)

    def new(self, loop_hash: str) -> str:
        return f"{_PREFIX}{loop_hash}.{self._stem}{next(self._counter):x}"

    def forwarded(self, loop_hash: str, received: Request, target: str, to: Destination) -> str:
        """The branch of `received` forwarded to `target` at `to`: a function of them when the
        sender's branch is an RFC 3261 one (unique per transaction), else `new`'s.

        Why: the same request retransmitted to another edge (the other box of a VIP pair,
        this edge restarted, either without the first one's transactions) must leave with the
        same branch, so that the next hop takes it for the retransmission it is and answers
        it again (§17.2.2), rather than as a new request: a BYE the callee has already
        answered would get 481, an INVITE the gateway is ringing 482 (merged, §8.2.2.2).  The
        target and destination keep a fork's branches apart; the loop hash stays in front.
        """
        sender = received.top_branch
        if sender is None or not is_rfc3261_branch(sender):
            return self.new(loop_hash)
        cseq = received.cseq
        parts = (sender, received.call_id, str(cseq.seq), cseq.method, target, to.transport,
                 to.host, str(to.port))  # fmt: skip # the transaction, then where it goes
        return f"{_PREFIX}{loop_hash}.{_hash(parts)}"


NO_LOOP_HASH: Final = "0" * _HASH_LENGTH
"""For requests forwarded statelessly (ACK for a 2xx): never answered, so never 482."""


def stateless_branch(request: Request) -> str:
    """The branch of a request forwarded statelessly (an ACK for a 2xx), before our Via is on.

    Why not :meth:`BranchMaker.new`: a stateless proxy must give every
    retransmission of a request the same branch (RFC 3261 §16.11).  A caller
    ACKs each retransmitted 2xx, and a UAS that sees the second ACK with
    another branch takes it for a new request (SIPp aborts the call).  So the
    branch is a hash of what identifies the received request: its top Via
    (the sender's branch), Call-ID and CSeq.
    """
    parts = (request.header("via") or "", request.call_id, str(request.cseq.seq))
    return f"{_PREFIX}{NO_LOOP_HASH}.{_hash(parts)}"


_OPTIONAL_FIELDS: Final = ("route", "proxy-require", "proxy-authorization")


def loop_hash(request: Request) -> str:
    """The hash of the loop-invariant fields of `request` as received."""
    parts = [
        request.uri_text,
        request.from_tag or "",
        request.to_tag or "",
        request.call_id,
        str(request.cseq.seq),
    ]
    for name in _OPTIONAL_FIELDS:
        if request.has_header(name):  # a list scan, far cheaper than decoding the values
            parts.extend(request.headers(name))
    return _hash(parts)


def hash_in_branch(branch: str | None) -> str | None:
    """The loop hash inside one of our branches, or None for anyone else's."""
    if branch is None or branch[: len(_PREFIX)] != _PREFIX:  # no `startswith`: see unbracket
        return None
    return branch[len(_PREFIX) : len(_PREFIX) + _HASH_LENGTH]
