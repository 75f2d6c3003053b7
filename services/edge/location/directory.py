"""What the proxy core knows of the registrar's records, sans-IO: answers or `Missing`.

The core asks (`is_local_domain`, `bindings`, `subscriber_exists`, `ha1`,
`claim_nonce_count`); a known, fresh answer comes back at once, so a warm
cache never waits on Redis.
An unknown one raises `Missing(query)`: the core parks the request and emits
a lookup, the runtime's driver reads Redis (`services.edge.feeds.location`), `learn`s
the answer here and has the core resume.  `registrar.…` events keep the
entries current between reads (`apply_*`); every entry also ages out after a
while, so a lost event costs at most one stale answer window, not forever.
Times are the caller's (the driver's loop clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.registrar.model import Location

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


@dataclass(frozen=True, slots=True)
class NonceCountQuery:
    """May nonce-count ``count`` of ``nonce`` be used?  Answered by claiming it in Redis, where
    the registrar claims REGISTERs' counts too: one replay protection for the deployment."""

    nonce: str
    count: int


Query = DomainQuery | BindingsQuery | SubscriberQuery | Ha1Query | NonceCountQuery
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
    nonce_count: float = 30.0
    """Only until the parked request resumes and uses it up."""

    def of(self, query: Query) -> float:
        if isinstance(query, DomainQuery):
            return self.domain
        if isinstance(query, BindingsQuery):
            return self.bindings
        if isinstance(query, SubscriberQuery):
            return self.subscriber
        if isinstance(query, NonceCountQuery):
            return self.nonce_count
        return self.ha1


class Directory:
    """The answers, and when events last changed each (to refuse reads they overtook).

    A Redis read takes a while; an event for the same AoR (or domain) may
    arrive meanwhile, and the read's answer, older than the event, must not
    replace it.  `reading()` stamps the start of a read; `learn(...,
    read_at=stamp)` drops the answer if an event for its query, or a
    `forget_all`, came after that stamp: the next question reads again.
    """

    def __init__(self, lifetimes: Lifetimes | None = None) -> None:
        self.lifetimes = lifetimes or Lifetimes()
        self._entries: dict[Query, tuple[Answer, float]] = {}
        self._events = 0
        """Events applied so far (and forget_alls): the stamp of `reading()`."""
        self._changed_at: dict[Query, int] = {}
        self._forgotten_at = 0

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

    def claim_nonce_count(self, nonce: str, count: int, now: float) -> bool:
        """Whether this use of ``nonce`` with ``count`` is its first (not a replay).

        The answer is used up by asking: the same request asks once, a replay
        of it asks again and gets Redis's answer to a second claim (no).
        """
        query = NonceCountQuery(nonce, count)
        claimed = self._get(query, now)
        del self._entries[query]
        return bool(claimed)

    def _get(self, query: Query, now: float) -> Answer:
        entry = self._entries.get(query)
        if entry is None or entry[1] <= now:
            raise Missing(query)
        return entry[0]

    # ----- answers ---------------------------------------------------------------------

    def reading(self) -> int:
        """The stamp to pass to `learn` for a read starting now."""
        return self._events

    def learn(
        self, query: Query, answer: Answer, now: float, *, read_at: int | None = None
    ) -> None:
        """Keep `answer`, unless an event that came after `read_at` made it stale."""
        if read_at is not None and (
            self._forgotten_at > read_at or self._changed_at.get(query, -1) >= read_at
        ):
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[query] = (answer, now + self.lifetimes.of(query))

    def _changed(self, query: Query) -> None:
        """An event about `query` arrived: reads started before now are outdated for it."""
        if len(self._changed_at) >= MAX_ENTRIES:
            self._changed_at.clear()
            self._forgotten_at = self._events + 1
        self._changed_at[query] = self._events
        self._events += 1

    def apply_binding(self, binding: Location, *, present: bool, now: float) -> None:
        """A binding was added or refreshed (`present`), or removed or expired.

        Only an AoR already cached is updated: for any other the event does not
        tell the whole list, and the next call reads it.
        """
        query = BindingsQuery(binding.aor)
        self._changed(query)
        entry = self._entries.get(query)
        if entry is None or not isinstance(entry[0], tuple):
            return
        others = [b for b in entry[0] if b.contact != binding.contact]
        if present:
            others.append(binding)
            others.sort(key=lambda b: (-b.priority, -b.expires_at))
        self._entries[query] = (tuple(others), now + self.lifetimes.bindings)

    def apply_domain(self, domain: str, *, local: bool, now: float) -> None:
        query = DomainQuery(domain.lower())
        self._changed(query)
        self.learn(query, local, now)

    def forget_all(self) -> None:
        """Events were lost (a `seq` gap, a reconnect): every answer is read again, and reads
        in flight are not kept (they may predate what was lost)."""
        self._entries.clear()
        self._changed_at.clear()
        self._events += 1
        self._forgotten_at = self._events
