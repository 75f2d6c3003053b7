"""The contract of batch consumers, against both buses (``make_bus`` is parametrised)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.bus import REASON_HEADER, Outcome, WorkMessage
from tests.shared.bus.support import Inbox, MakeBus, until


async def test_a_batch_is_what_waits_in_order_and_each_message_settles_its_own_way(
    make_bus: MakeBus,
) -> None:
    sender = await make_bus("sender")
    for n in range(40):
        await sender.send("batched", f"{n}".encode())
    worker = await make_bus("worker", "1")
    batches: list[list[bytes]] = []
    firsts: list[bytes] = []
    redelivered: list[bytes] = []

    async def handler(messages: Sequence[WorkMessage]) -> list[Outcome]:
        batches.append([message.body for message in messages])
        firsts.extend(message.body for message in messages if not message.redelivered)
        outcomes = []
        for message in messages:
            if message.redelivered:
                redelivered.append(message.body)
                outcomes.append(Outcome())
            elif message.body == b"7":
                outcomes.append(Outcome(dead_reason="seven is refused"))
            elif message.body == b"9":
                outcomes.append(Outcome(requeue=True))
            else:
                outcomes.append(Outcome())
        return outcomes

    await worker.consume_batches("batched", handler, max_batch=16)
    dead = Inbox()
    await worker.consume("batched.dead", dead)
    await until(lambda: redelivered == [b"9"] and len(dead.items) == 1)
    assert firsts == [f"{n}".encode() for n in range(40)], "queue order, nothing lost"
    assert max(len(batch) for batch in batches) > 1, "what waits comes together"
    assert all(len(batch) <= 16 for batch in batches)
    assert dead.items[0].body == b"7"
    assert dead.items[0].headers == {REASON_HEADER: "seven is refused"}
    await worker.close()

    # Everything else was acknowledged: a new consumer sees only what comes next.
    later = Inbox()
    await (await make_bus("worker", "2")).consume("batched", later)
    await sender.send("batched", b"next")
    await until(lambda: len(later.items) == 1)
    assert [message.body for message in later.items] == [b"next"]


async def test_a_lone_message_does_not_wait_for_a_batch_to_fill(make_bus: MakeBus) -> None:
    sender = await make_bus("sender")
    worker = await make_bus("worker")
    seen = Inbox()

    async def handler(messages: Sequence[WorkMessage]) -> list[Outcome]:
        await seen(list(messages))
        return [Outcome()] * len(messages)

    await worker.consume_batches("lonely", handler, max_batch=256)
    await sender.send("lonely", b"alone")
    async with asyncio.timeout(5):
        await until(lambda: len(seen.items) == 1)
    assert [message.body for message in seen.items[0]] == [b"alone"]


async def test_a_failing_batch_handler_dead_letters_its_batch_with_the_reason(
    make_bus: MakeBus,
) -> None:
    sender = await make_bus("sender")
    worker = await make_bus("worker")

    async def handler(messages: Sequence[WorkMessage]) -> list[Outcome]:
        if any(message.body == b"bad" for message in messages):
            raise ValueError("cannot apply")
        return [Outcome()] * len(messages)

    dead = Inbox()
    await worker.consume("failing.dead", dead)
    await worker.consume_batches("failing", handler)
    await sender.send("failing", b"bad")
    await until(lambda: len(dead.items) == 1)
    assert dead.items[0].headers == {REASON_HEADER: "ValueError: cannot apply"}
