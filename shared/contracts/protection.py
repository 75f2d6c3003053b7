"""The ``edge.…`` events of the protection state: blocks, clears, the allow-list.

Every edge worker follows them to keep its in-memory copy of the cluster's
protection state (``shared.protection``); the API publishes the clears and
allow-list changes, the edges the blocks.  They live here because the API
and the workers that apply them are different processes.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.contracts.event import Event
from shared.protection.store import BlockKind


class SourceBlocked(Event):
    """`edge.source.blocked`: a source exceeded the flood limit and is being dropped.

    Fields: ``source`` (IP address), ``rate`` (estimated requests in the last
    period), ``limit`` and ``period`` (the thresholds), ``block_time`` (seconds
    it stays blocked after it stops), ``edge`` (the reporting instance).
    """

    routing_key: ClassVar[str] = "edge.source.blocked"

    source: str
    rate: float
    limit: int
    period: float
    block_time: float
    edge: str


class AuthBlocked(Event):
    """``edge.auth.blocked``: an account or a source failed authentication too often.

    ``kind``: ``account`` (``key`` is ``user@realm``) or ``source`` (``key``
    is the IP address); ``until``: wall time (Unix seconds) the block ends;
    ``failures``: the count that crossed ``threshold`` within ``window``
    seconds; ``source``, ``user``, ``realm``: the last failed attempt;
    ``edge``: the instance that counted it.
    """

    routing_key: ClassVar[str] = "edge.auth.blocked"

    kind: Literal["account", "source"]
    key: str
    until: float
    failures: int
    threshold: int
    window: int
    source: str
    user: str
    realm: str
    edge: str


class ScannerFlagged(Event):
    """``edge.scanner.flagged``: a source looked like a scanner and is flagged ``flag_time`` s.

    ``reason``: ``user-agent`` or ``sweep``; ``edge``: the reporting instance.
    """

    routing_key: ClassVar[str] = "edge.scanner.flagged"

    source: str
    reason: Literal["user-agent", "sweep"]
    flag_time: float
    edge: str


class ProtectionCleared(Event):
    """``edge.protection.cleared``: an operator lifted a block; every edge worker forgets it.

    ``kind`` ``account``/``source`` lift an authentication block (and reset its
    failure count), ``flood`` a pike block, ``scanner`` a scanner flag (and its
    sweep count); ``key`` is the account or the IP address.
    """

    routing_key: ClassVar[str] = "edge.protection.cleared"

    kind: BlockKind
    key: str


class AllowListChanged(Event):
    """``edge.protection.allowlist.changed``: the stored allow-list changed; edges reload it."""

    routing_key: ClassVar[str] = "edge.protection.allowlist.changed"
