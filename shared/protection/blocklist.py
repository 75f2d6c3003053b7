"""One edge worker's copy of the cluster's authentication blocks, asked on the SIP path.

The store holds the blocks (``store``); every worker loads them at start
and follows ``edge.auth.blocked`` and ``edge.protection.cleared``, so the
check before a challenge is a dict probe, never a round trip.  Expired
entries are dropped when met and by `prune`; the table is bounded (the
oldest block goes first) so a flood of blocks cannot grow it.
"""

from __future__ import annotations

from typing import Final

from shared.protection.store import BlockKind

MAX_BLOCKS: Final = 100_000


class BlockList:
    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[tuple[BlockKind, str], float] = {}

    def add(self, kind: BlockKind, key: str, until: float) -> None:
        entries = self._until
        if (kind, key) not in entries and len(entries) >= MAX_BLOCKS:
            del entries[next(iter(entries))]
        entries[(kind, key)] = until

    def remove(self, kind: BlockKind, key: str) -> bool:
        return self._until.pop((kind, key), None) is not None

    def replace(self, entries: dict[tuple[BlockKind, str], float]) -> None:
        self._until = dict(entries)

    def blocks(self, kind: BlockKind, key: str, now: float) -> bool:
        until = self._until.get((kind, key))
        if until is None:
            return False
        if now < until:
            return True
        del self._until[(kind, key)]
        return False

    def refuses(self, account: str, source: str, now: float) -> bool:
        """Whether an authentication of `account` from `source` is refused (wall time `now`)."""
        return bool(self._until) and (
            self.blocks("account", account, now) or self.blocks("source", source, now)
        )

    def prune(self, now: float) -> None:
        self._until = {entry: until for entry, until in self._until.items() if until > now}

    def __len__(self) -> int:
        return len(self._until)
