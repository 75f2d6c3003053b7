"""Fraud counts and blocks shared by every edge and worker: Redis scripts, one round trip each.

Why scripts: a count kept per process lets a stolen account spread its calls
over N workers and edges and stay N times under a threshold. One Lua script
per new call checks the account's blocks, counts the call for every rule it
matches, compares each count before and after with the rule's levels and,
at a critical level of a rule that blocks, sets the block: atomically, so two
edges racing past a threshold set it once. Only the thresholds a rule sets are
counted (a rule of calls per minute alone keeps one sorted set, nothing more).
The Lua is in :mod:`shared.fraud.scripts`.

Keys (under the namespace)::

    fraud:blocked:<account>            set: "*" (the account) or the prefixes blocked
    fraud:blocks                       hash block id → JSON (what, why, since)
    fraud:cpm:<rule>:<account>         sorted set Call-ID → when (ms): the last minute
    fraud:calls:<rule>:<account>       sorted set Call-ID → when its lease ends (ms)
    fraud:seq:<rule>:<account>         hash {p: last prefix, n: calls to it in a row, c: Call-ID}
    fraud:minutes:<rule>:<account>     hash hour bucket → minutes talked
    fraud:call:<Call-ID>               JSON: the rules the call counts for, until its end
    fraud:watched                      sorted set "<rule> <account>" → last call (ms)

A block id is the first 16 hex digits of SHA-1(account, newline, "*" or prefix):
the same block has the same id on every edge. The clock is Redis's (``TIME``);
tests may pass ``now``. A "minute" and a "day" are ``minute_ms`` and
``day_ms`` (scaled down in tests by ``CALLMESH_FRAUD_WINDOW_SCALE``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from shared.fraud import scripts
from shared.fraud.rules import Crossing, FraudQuery, FraudVerdict, Metric
from shared.settings import Settings
from shared.store import Store


def block_id(account: str, member: str) -> str:
    """The id of the block of ``member`` (``"*"``: the whole account, or a prefix), computed
    here and passed to the scripts (not every Lua has ``redis.sha1hex``: fakeredis lacks it)."""
    return hashlib.sha1(f"{account}\n{member}".encode(), usedforsecurity=False).hexdigest()[:16]


WATCHED_KEPT = 100_000
"""The index of watched (rule, account) pairs keeps the most recent ones."""


@dataclass(frozen=True, slots=True)
class Counts:
    """One account's figures under one rule, as of now."""

    rule_id: str
    account: str
    calls_per_minute: int
    concurrent: int
    last_prefix: str | None
    sequential: int
    minutes_per_day: float


class FraudStore:
    """The scripts over one namespace (see the module docstring)."""

    def __init__(
        self, store: Store, minute_ms: int = 60_000, lease_ms: int = 4 * 3600 * 1000
    ) -> None:
        self._store = store
        self._redis = store.redis
        self.minute_ms = minute_ms
        self.day_ms = minute_ms * 1440
        self.lease_ms = lease_ms
        self._blocks = store.key("fraud", "blocks")
        self._watched = store.key("fraud", "watched")
        self._blocked_prefix = store.key("fraud", "blocked") + ":"
        self._check = self._redis.register_script(scripts.CHECK)
        self._end = self._redis.register_script(scripts.END)
        self._counts = self._redis.register_script(scripts.COUNTS)
        self._unblock = self._redis.register_script(scripts.UNBLOCK)

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> FraudStore:
        """A minute scaled by ``CALLMESH_FRAUD_WINDOW_SCALE``; a call's concurrent slot lapses
        after ``CALLMESH_CALL_LIMIT_MAX_CALL_DURATION`` if no call end frees it first."""
        minute_ms = max(1, round(60_000 * settings.fraud_window_scale))
        return cls(store, minute_ms, round(settings.call_limit_max_call_duration * 1000))

    def _keys(self, rule_id: str, account: str) -> list[str]:
        key = self._store.key
        return [key("fraud", part, rule_id, account) for part in ("cpm", "calls", "seq", "minutes")]

    async def check(self, query: FraudQuery, now_ms: int | None = None) -> FraudVerdict:
        """Refuse a call of a blocked account (or to a blocked prefix), else count it for every
        rule whose prefix it matches: the thresholds it reached, and a block set by one."""
        keys = [
            self._blocked_prefix + query.account,
            self._blocks,
            self._store.key("fraud", "call", query.call_id),
            self._watched,
        ]
        args: list[str | int] = [
            "" if now_ms is None else now_ms,
            query.call_id,
            query.account,
            self.minute_ms,
            self.day_ms,
            self.lease_ms,
            len(query.matches),
            block_id(query.account, "*"),
        ]
        for match in query.matches:
            keys += self._keys(match.rule_id, query.account)
            counted = match.prefix is not None
            prefix = match.prefix or ""
            args += [match.rule_id, int(counted), prefix, *match.levels, match.block]
            args.append(block_id(query.account, prefix))
        return _verdict(await self._check(keys=keys, args=args))

    async def call_ended(
        self, call_id: str, minutes: float, now_ms: int | None = None
    ) -> tuple[str, FraudVerdict]:
        """A call's end: free its concurrent slot and add its minutes (once: a second end of
        the same call finds nothing); its account ("" if none) and the minute thresholds this
        reached."""
        keys = [self._store.key("fraud", "call", call_id), self._blocks]
        args = [
            "" if now_ms is None else now_ms,
            repr(minutes),
            self.day_ms,
            self._blocked_prefix,
            call_id,
        ]
        reply = await self._end(keys=keys, args=args)
        return _text(reply[2]), _verdict(reply)

    async def counts(
        self, pairs: Sequence[tuple[str, str]], now_ms: int | None = None
    ) -> list[Counts]:
        """The figures of each (rule, account) as of one instant."""
        if not pairs:
            return []
        keys = [key for rule_id, account in pairs for key in self._keys(rule_id, account)]
        args = ["" if now_ms is None else now_ms, self.minute_ms, self.day_ms]
        found = await self._counts(keys=keys, args=args)
        return [
            Counts(
                rule_id,
                account,
                int(found[5 * i]),
                int(found[5 * i + 1]),
                _text(found[5 * i + 2]) if found[5 * i + 2] else None,
                int(found[5 * i + 3]),
                round(float(found[5 * i + 4]), 3),
            )
            for i, (rule_id, account) in enumerate(pairs)
        ]

    async def watched(self, count: int = 1000) -> list[tuple[str, str]]:
        """The (rule, account) pairs most recently counted, newest first."""
        await self._redis.zremrangebyrank(self._watched, 0, -WATCHED_KEPT - 1)
        found = cast(list[bytes], await self._redis.zrevrange(self._watched, 0, count - 1))
        pairs = [_text(each).split(" ", 1) for each in found]
        return [(pair[0], pair[1]) for pair in pairs if len(pair) == 2]

    async def blocks(self) -> list[dict[str, Any]]:
        """Every block in force, oldest first."""
        found = await self._redis.hgetall(self._blocks)
        return sorted((orjson.loads(value) for value in found.values()), key=_since)

    async def blocked(self, account: str) -> set[str]:
        """What is blocked of ``account``: ``"*"`` (all of it) and prefixes."""
        return {
            _text(member) for member in await self._redis.smembers(self._blocked_prefix + account)
        }

    async def unblock(self, block_id: str) -> dict[str, Any] | None:
        """Lift a block; its record, or None when there is no such block."""
        found = await self._unblock(keys=[self._blocks], args=[block_id, self._blocked_prefix])
        return None if found is None else cast(dict[str, Any], orjson.loads(found))


def _verdict(reply: list[Any]) -> FraudVerdict:
    refused, block_id, member = int(reply[0]), _text(reply[1]), _text(reply[2])
    crossings = tuple(
        Crossing(
            rule_id=_text(reply[i]),
            metric=cast(Metric, _text(reply[i + 1])),
            level="critical" if _text(reply[i + 2]) == "critical" else "warning",
            value=float(reply[i + 3]),
            threshold=int(reply[i + 4]),
            prefix=_text(reply[i + 5]),
            block_id=_text(reply[i + 6]) or None,
            blocked=_blocked(_text(reply[i + 7])),
        )
        for i in range(3, len(reply), 8)
    )
    if not refused:
        return FraudVerdict(crossings=crossings)
    blocked = "account" if member == "*" else f"prefix {member}"
    return FraudVerdict(block_id, blocked, crossings)


def _blocked(member: str) -> Literal["account", "prefix"] | None:
    if not member:
        return None
    return "account" if member == "*" else "prefix"


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _since(block: dict[str, Any]) -> float:
    return float(block.get("since", 0))
