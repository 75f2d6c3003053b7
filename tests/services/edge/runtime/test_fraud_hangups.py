"""The fraud blocks' consumer: a block's answered calls hung up, its ringing ones looked at
again, bad messages dead-lettered, an accounting service away retried.

The accounting service and the BYE sender are stand-ins here (what they answer and send
is tested in `tests/services/edge/api` and `test_hangups`); the whole path runs on the wire
in `tests/services/edge/test_hangup_wire.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from services.edge.api.accounting import (
    Accounting,
    AccountingRefusedError,
    AccountingUnavailableError,
    Listing,
)
from services.edge.api.ending import CallEnder
from services.edge.control.byes import Bye
from services.edge.runtime.fraud_hangups import FraudHangups
from services.edge.runtime.hangups import ByeOutcome, Hangups
from services.edge.runtime.siblings import SiblingAnswer
from shared.bus import DeadLetter, Requeue, WorkMessage
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.services.edge.control.test_byes import SIX
from tests.services.edge.control.test_fraud_calls import call, critical
from tests.services.edge.control.test_plan import attempt

BUS = MemoryBus(MemoryBroker(), "test", "routing", "routing")


class Records:
    """The accounting service's open calls and dialogs, as the edge's client returns them."""

    def __init__(self, calls: list[dict[str, Any]], page: int = 2) -> None:
        self.calls = calls
        self.page = page
        self.asked: list[dict[str, str]] = []
        self.failure: Exception | None = None

    async def open_calls(self, params: dict[str, str]) -> Listing:
        if self.failure is not None:
            raise self.failure
        self.asked.append(dict(params))
        start = int(params.get("cursor", "0"))
        items = self.calls[start : start + self.page]
        more = start + self.page < len(self.calls)
        return Listing(items=items, next_cursor=str(start + self.page) if more else None)

    async def dialogs(self, call_id: str) -> list[dict[str, Any]] | None:
        found = [c for c in self.calls if c["call_id"] == call_id]
        return [{**c, **attempt(answered=c["answer_at"] is not None)} for c in found] or None


class Sender:
    """Takes the BYEs instead of the sockets."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.byes: list[int] = []
        """How many BYEs each hang-up sent."""

    async def end(self, call_id: str, byes: list[Bye]) -> list[ByeOutcome]:
        self.ended.append(call_id)
        self.byes.append(len(byes))
        return [ByeOutcome(bye.side, 200, "OK") for bye in byes]


def consumer(records: Records, sender: Sender | None, interval: float = 0.05) -> FraudHangups:
    found = None if sender is None else (cast(Hangups, sender), SIX)
    ender = CallEnder(lambda: found, "edge-a")
    return FraudHangups(cast(Accounting, records), ender, follow_ups=2, follow_up_interval=interval)


def message(body: bytes) -> WorkMessage:
    return WorkMessage(body=body)


def block(**fields: Any) -> WorkMessage:
    return message(BUS.envelope(critical(**fields)).to_bytes())


async def test_every_answered_call_of_the_account_is_hung_up_once_across_pages() -> None:
    records = Records(
        [
            call(call_id="c1"),
            call(call_id="c2", caller="sip:mallory@other.example"),  # someone else's
            call(call_id="c3", callee="+33123456789"),
            call(call_id="c3"),  # a fork answered twice: one hang-up
            call(call_id="c4", peer="acme"),
        ]
    )
    sender = Sender()
    await consumer(records, sender)(block())
    assert sender.ended == ["c1", "c3"]
    assert [asked.get("cursor") for asked in records.asked] == [None, "2", "4"]
    assert records.asked[0] == {"caller": "mallory", "limit": "200"}


async def test_a_prefix_block_ends_only_the_calls_to_it() -> None:
    records = Records([call(call_id="c1"), call(call_id="c2", callee="+33123456789")])
    sender = Sender()
    await consumer(records, sender)(block(blocked="prefix"))
    assert sender.ended == ["c1"]


async def test_a_call_ringing_at_the_block_is_hung_up_once_answered() -> None:
    records = Records([call(call_id="c1", answer_at=None)])
    sender = Sender()
    handler = consumer(records, sender)
    await handler(block())
    assert sender.ended == []
    records.calls = [call(call_id="c1")]  # answered since
    for _ in range(100):
        if sender.ended:
            break
        await asyncio.sleep(0.02)
    assert sender.ended == ["c1"]
    await handler.stop()


async def test_a_threshold_without_a_block_ends_nothing() -> None:
    records = Records([call()])
    sender = Sender()
    await consumer(records, sender)(block(block=None, blocked=None))
    assert sender.ended == [] and records.asked == []


def malformed() -> bytes:
    envelope = BUS.envelope(critical())
    return envelope.model_copy(update={"data": {**envelope.data, "account": 5}}).to_bytes()


@pytest.mark.parametrize("body", [b"not json", malformed()])
async def test_a_bad_message_is_dead_lettered_with_a_reason(body: bytes) -> None:
    with pytest.raises(DeadLetter, match="not a fraud threshold event"):
        await consumer(Records([]), Sender())(message(body))


async def test_an_accounting_service_away_is_retried_and_one_that_refuses_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.edge.runtime.fraud_hangups.RETRY_DELAY", 0.01)
    records = Records([call()])
    records.failure = AccountingUnavailableError("no answer (ConnectError)")
    with pytest.raises(Requeue):
        await consumer(records, Sender())(block())
    records.failure = AccountingRefusedError(401, "bad token")
    with pytest.raises(DeadLetter, match="refused: 401"):
        await consumer(records, Sender())(block())
    records.failure = None
    with pytest.raises(Requeue):  # this edge's sockets not open yet
        await consumer(records, None)(block())


async def test_another_callers_attempt_under_the_same_call_id_is_left_alone() -> None:
    """A Call-ID is the caller's choice: the blocked account's attempt ends (two BYEs), the
    other caller's attempt under it keeps its call."""
    records = Records(
        [call(call_id="c1"), call(call_id="c1", caller="sip:bob@example.com")], page=10
    )
    sender = Sender()
    await consumer(records, sender)(block())
    assert sender.ended == ["c1"] and sender.byes == [2]


async def test_a_call_another_edge_answered_is_hung_up_through_it() -> None:
    """As the API's hang-up (one path, `api.ending`): a caller behind NAT lets in only what
    comes from the edge that answered its call."""
    asked: list[tuple[str, str]] = []

    async def forward(edge: str, call_id: str) -> SiblingAnswer | None:
        asked.append((edge, call_id))
        return SiblingAnswer(200, {"call_id": call_id, "byes": []})

    sender = Sender()
    found = (cast(Hangups, sender), SIX)
    handler = FraudHangups(
        cast(Accounting, Records([call()])), CallEnder(lambda: found, "edge-z", forward)
    )
    await handler(block())
    assert asked == [("edge-a", "c1")] and sender.ended == []  # sent by the answering edge
