"""``topic_matches`` against RabbitMQ's topic exchange rules."""

from __future__ import annotations

import aio_pika
import pytest

from shared.bus import topic_matches
from tests.conftest import RABBITMQ_URL

CASES = [
    # pattern, routing key, RabbitMQ delivers?
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "a.b", False),
    ("a.b.c", "a.b.c.d", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", "", False),  # the empty key has no words...
    ("*.#", "", False),
    ("#.*", "", False),
    ("", "", True),
    ("", "a", False),
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("a.#", "a", True),  # '#' matches zero words
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.c", "c", True),
    ("#.c", "a.b.c", True),
    ("#.c", "a.c.d", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.b", "a.b.b", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("*.#", "a", True),
    ("#.*", "a", True),
    ("#.*.#", "a.b.c", True),
    ("*.*", "a", False),
    ("routing.rule.*", "routing.rule.changed", True),
    ("routing.rule.*", "routing.rules.changed", False),
    ("routing.*", "routing", False),
    ("a..b", "a..b", True),  # ...but empty words between dots are words
    ("*.*", ".", True),
    ("a.*", "a.", True),
    ("a.*.b", "a..b", True),
]


@pytest.mark.parametrize(("pattern", "routing_key", "expected"), CASES)
def test_topic_matches_like_rabbitmq(pattern: str, routing_key: str, expected: bool) -> None:
    assert topic_matches(pattern, routing_key) is expected


@pytest.mark.integration
async def test_table_is_what_rabbitmq_does(namespace: str) -> None:
    """The table above is checked against the real broker, so it cannot drift from it."""
    patterns = sorted({pattern for pattern, _, _ in CASES})
    keys = sorted({key for _, key, _ in CASES})
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"{namespace}.topics", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queues = {}
        for pattern in patterns:
            queue = await channel.declare_queue("", exclusive=True)
            await queue.bind(exchange, pattern)
            queues[pattern] = queue
        for key in keys:
            await exchange.publish(aio_pika.Message(key.encode()), key)
        delivered = set()
        for pattern, queue in queues.items():
            while (message := await queue.get(fail=False)) is not None:
                delivered.add((pattern, message.body.decode()))
    for pattern, key, expected in CASES:
        assert ((pattern, key) in delivered) is expected, (pattern, key)
