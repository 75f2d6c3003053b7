"""AMQP topic matching, so the in-process bus routes exactly as RabbitMQ does."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether ``routing_key`` matches ``pattern`` (``*`` one word, ``#`` zero or more).

    As in RabbitMQ, the empty key has no words at all (``*`` does not match it),
    while ``a..b`` has an empty middle word.
    """
    return _match(_words(pattern), _words(routing_key))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split(".")) if text else ()


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])
