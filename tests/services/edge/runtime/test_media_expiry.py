"""A timed-out call's ``edge.media.expired`` message against a real rtpengine.

The session of a call offered to rtpengine is deleted; a call rtpengine does
not hold (never relayed, or deleted already by its BYE) is fine; a message
that is not an ``accounting.cdr.timed_out`` event is dead-lettered with the
reason; with no rtpengine instance up the message goes back to the queue.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.rtpengine import Daemon, running_rtpengine
from services.edge import metrics
from services.edge.runtime.media_expiry import MediaExpiry
from shared.bus import DeadLetter, Envelope, Requeue, WorkMessage
from shared.contracts.accounting import CallRecord, CdrCompleted, CdrTimedOut
from shared.rtpengine.client import RtpengineClient
from shared.rtpengine.instances import Instance

pytestmark = pytest.mark.integration

CALLER_SDP = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_rtpengine(tmp_path_factory.mktemp("rtpengine")) as running:
        yield running


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[RtpengineClient]:
    client = RtpengineClient((daemon.instance,), timeout=0.5)
    await client.start()
    yield client
    client.close()


def timed_out(call_id: str, event: type[CdrCompleted] = CdrTimedOut) -> bytes:
    """The envelope the accounting service publishes for a call it closed as timeout."""
    now = time.time()
    record = CallRecord(
        call_id=call_id,
        from_tag="t1",
        state="complete",
        disposition="timeout",
        setup_at=now - 10,
        answer_at=now - 9,
        end_at=now - 9,
        last_seen_at=now - 9,
    )
    envelope = Envelope(
        type=event.routing_key,
        schema_version=1,
        service="accounting",
        instance="a1",
        ts=now,
        stream="s",
        seq=1,
        data=event(version=2, record=record).model_dump(mode="json"),
    )
    return envelope.to_bytes()


async def held(client: RtpengineClient) -> list[str]:
    reply = (await client.request(client.instances[0], "list", {})).checked("list")
    calls = reply.body.get("calls")
    assert isinstance(calls, list)
    return [call.decode() for call in calls if isinstance(call, bytes)]


async def test_the_timed_out_calls_session_is_deleted(client: RtpengineClient) -> None:
    await client.offer("expired-1@edge", {"from-tag": "t1", "sdp": CALLER_SDP})
    assert "expired-1@edge" in await held(client)  # the positive control: a session to delete
    before = metrics.MEDIA_EXPIRED.value
    await MediaExpiry(client)(WorkMessage(timed_out("expired-1@edge")))
    assert "expired-1@edge" not in await held(client)
    assert metrics.MEDIA_EXPIRED.value == before + 1


async def test_a_call_rtpengine_does_not_hold_is_fine(client: RtpengineClient) -> None:
    expiry = MediaExpiry(client)
    await expiry(WorkMessage(timed_out("never-relayed@edge")))
    await client.offer("twice@edge", {"from-tag": "t1", "sdp": CALLER_SDP})
    await expiry(WorkMessage(timed_out("twice@edge")))
    await expiry(WorkMessage(timed_out("twice@edge")))  # a redelivery: already gone
    assert "twice@edge" not in await held(client)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not an event envelope"),
        (
            timed_out("x@edge", CdrCompleted),
            "not accounting.cdr.timed_out: 'accounting.cdr.completed'",
        ),
        (
            timed_out("x@edge").replace(b'"call_id":"x@edge",', b""),
            "bad accounting.cdr.timed_out: record.call_id: Field required",
        ),
    ],
)
async def test_a_message_that_is_not_a_timed_out_call_is_dead_lettered_with_the_reason(
    client: RtpengineClient, body: bytes, reason: str
) -> None:
    with pytest.raises(DeadLetter) as raised:
        await MediaExpiry(client)(WorkMessage(body))
    assert raised.value.reason.startswith(reason), raised.value.reason


async def test_with_no_rtpengine_up_the_message_waits_on_the_queue(tmp_path: Path) -> None:
    nobody = Instance("127.0.0.1", 9, 1)  # the discard port: no ng reply ever
    client = RtpengineClient((nobody,), timeout=0.05, retries=0)
    await client.start()
    try:
        with pytest.raises(Requeue):
            await MediaExpiry(client, retry_delay=0)(WorkMessage(timed_out("waits@edge")))
    finally:
        client.close()
