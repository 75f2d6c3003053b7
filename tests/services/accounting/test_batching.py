"""Group commit: concurrent batches share a transaction; a bad event does not take them down."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.accounting.batching import GroupCommit
from services.accounting.fold import fold_call
from services.accounting.store import Applied, RecordStore
from shared.contracts.calls import CallEvent
from tests.services.accounting.calls import answered_call, started


class Spy:
    """Counts the batches reaching the store; fails any batch holding the call ``poison``."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.sizes: list[int] = []

    async def apply_many(self, batch: Sequence[CallEvent]) -> list[Applied]:
        self.sizes.append(len(batch))
        if any(event.call_id == "poison" for event in batch):
            raise ValueError("this event cannot be stored")
        return await self.store.apply_many(batch)


async def test_concurrent_batches_share_commits(record_store: RecordStore) -> None:
    spy = Spy(record_store)
    committer = GroupCommit(spy)  # type: ignore[arg-type]
    calls = [answered_call(f"c{n}") for n in range(10)]
    batches = await asyncio.gather(*(committer.apply(call) for call in calls))
    assert len(spy.sizes) < len(calls) / 2, spy.sizes
    for call, results in zip(calls, batches, strict=True):
        assert all(isinstance(applied, Applied) for applied in results)
        first = results[0]
        assert isinstance(first, Applied) and not first.duplicate
        assert first.records[0].record == fold_call(call)[0]
    await committer.close()


async def test_a_bad_event_fails_alone(record_store: RecordStore) -> None:
    spy = Spy(record_store)
    committer = GroupCommit(spy)  # type: ignore[arg-type]
    results = await committer.apply([started("a"), started("poison"), started("b")])
    assert isinstance(results[1], ValueError)
    assert [type(r) for r in (results[0], results[2])] == [Applied, Applied]
    await committer.close()


async def test_a_batch_reports_each_call_once_and_inner_duplicates(
    record_store: RecordStore,
) -> None:
    first, second = started("x"), started("y")
    results = await record_store.apply_many([first, second, first])
    assert [a.duplicate for a in results] == [False, False, True]
    assert [s.changed for a in results for s in a.records] == [True, True, False]


async def test_closing_fails_what_still_waits() -> None:
    class Stuck:
        async def apply_many(self, batch: Sequence[CallEvent]) -> list[Applied]:
            await asyncio.Event().wait()
            raise AssertionError

    committer = GroupCommit(Stuck())  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(committer.apply([started()]))
    await asyncio.sleep(0.05)
    await committer.close()
    (result,) = await waiting
    assert isinstance(result, ConnectionError)
    assert "stopping" in str(result)


async def test_two_transactions_are_in_flight_at_once() -> None:
    class Slow:
        """Holds each batch 0.2 s, counting the batches open at once."""

        def __init__(self) -> None:
            self.open = self.most = 0

        async def apply_many(self, batch: Sequence[CallEvent]) -> list[Applied]:
            self.open += 1
            self.most = max(self.most, self.open)
            await asyncio.sleep(0.2)
            self.open -= 1
            return [Applied(False, ())] * len(batch)

    store = Slow()
    committer = GroupCommit(store, max_batch=1)  # type: ignore[arg-type]
    results = await committer.apply([started("a"), started("b"), started("c")])
    assert [type(result) for result in results] == [Applied] * 3
    assert store.most == 2, "one transaction in the database while the next is prepared"
    await committer.close()
