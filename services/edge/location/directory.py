"""What the proxy core knows of the registrar's records, sans-IO: answers or `Missing`.

The core asks (`is_local_domain`, `bindings`, `subscriber_exists`, `ha1`); a
known, fresh answer comes back at once, so a warm cache never waits on Redis.
An unknown one raises `Missing(query)`: the core parks the request and emits
a lookup, the adapter reads Redis (`services.edge.location.feed`), `learn`s
the answer here and has the core resume.  `registrar.…` events keep the
entries current between reads (`apply_*`); every entry also ages out after a
while, so a lost event costs at most one stale answer window, not forever.
Times are the caller's (the adapter's loop clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.registrar.model import Location

MAX_ENTRIES: Final = 500_000
"""Past this many entries the cache starts over (bounded memory against a flood of lookups)."""


@dataclass(frozen=True, slots=True)
class DomainQuery:
    domain: str


@dataclass(frozen=True, slots=True)
class BindingsQuery:
    aor: str


@dataclass(frozen=True, slots=True)
class SubscriberQuery:
    user: str
    domain: str


@dataclass(frozen=True, slots=True)
class Ha1Query:
    user: str
    domain: str
    algorithm: str


Query = DomainQuery | BindingsQuery | SubscriberQuery | Ha1Query
Answer = bool | tuple[Location, ...] | str | None


class Missing(Exception):  # noqa: N818 - it is a question, not a failure
    """The directory does not know the answer to `query` yet: look it up, then resume."""

    def __init__(self, query: Query) -> None:
        super().__init__(query)
        self.query = query


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """Seconds an answer is trusted: events keep domains and bindings current, so
    theirs are long; subscriber existence and HA1s have no events and are short."""

    domain: float = 300.0
    bindings: float = 300.0
    subscriber: float = 30.0
    ha1: float = 30.0

    def of(self, query: Query) -> float:
        if isinstance(query, DomainQuery):
            return self.domain
        if isinstance(query, BindingsQuery):
            return self.bindings
        if isinstance(query, SubscriberQuery):
            return self.subscriber
        return self.ha1


class Directory:
    def __init__(self, lifetimes: Lifetimes | None = None) -> None:
        self.lifetimes = lifetimes or Lifetimes()
        self._entries: dict[Query, tuple[Answer, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    # ----- questions (raise Missing) ---------------------------------------------------

    def is_local_domain(self, domain: str, now: float) -> bool:
        return bool(self._get(DomainQuery(domain.lower()), now))

    def bindings(self, aor: str, now: float) -> tuple[Location, ...]:
        """The AoR's bindings, highest q first (the order the registrar stores them in)."""
        found = self._get(BindingsQuery(aor), now)
        return found if isinstance(found, tuple) else ()

    def subscriber_exists(self, user: str, domain: str, now: float) -> bool:
        return bool(self._get(SubscriberQuery(user, domain.lower()), now))

    def ha1(self, user: str, domain: str, algorithm: str, now: float) -> str | None:
        found = self._get(Ha1Query(user, domain.lower(), algorithm.upper()), now)
        return found if isinstance(found, str) else None

    def _get(self, query: Query, now: float) -> Answer:
        entry = self._entries.get(query)
        if entry is None or entry[1] <= now:
            raise Missing(query)
        return entry[0]

    # ----- answers ---------------------------------------------------------------------

    def learn(self, query: Query, answer: Answer, now: float) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[query] = (answer, now + self.lifetimes.of(query))

    def apply_binding(self, binding: Location, *, present: bool, now: float) -> None:
        """A binding was added or refreshed (`present`), or removed or expired.

        Only an AoR already cached is updated: for any other the event does not
        tell the whole list, and the next call reads it.
        """
        query = BindingsQuery(binding.aor)
        entry = self._entries.get(query)
        if entry is None or not isinstance(entry[0], tuple):
            return
        others = [b for b in entry[0] if b.contact != binding.contact]
        if present:
            others.append(binding)
            others.sort(key=lambda b: (-b.priority, -b.expires_at))
        self._entries[query] = (tuple(others), now + self.lifetimes.bindings)

    def apply_domain(self, domain: str, *, local: bool, now: float) -> None:
        self.learn(DomainQuery(domain.lower()), local, now)

    def forget_all(self) -> None:
        """Events were lost (a `seq` gap, a reconnect): every answer is read again."""
        self._entries.clear()
