"""Hanging up and transferring a B2BUA call held by another worker: the control frames, and
the request and its answer between two workers' real hand-on sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from pathlib import Path

import pytest

from services.edge.runtime.affinity import CONTROL, CallAffinity, WorkerGroup
from services.edge.runtime.transfer_targets import TransferTargetError
from services.edge.runtime.worker_control import (
    ANSWER,
    HANG_UP,
    MAX_FIELD,
    TRANSFER,
    ControlFrame,
    ControlFrameError,
    WorkerControl,
    WorkerControlError,
    decode,
    encode,
)

HEADER = struct.Struct("!HHI")


def call_owned_by(group: WorkerGroup, index: int) -> str:
    return next(
        f"{n}-ctl@192.0.2.1"
        for n in range(1000)
        if group.owner(f"{n}-ctl@192.0.2.1".encode()) == index
    )


def test_a_frame_keeps_its_op_sender_correlation_and_fields() -> None:
    for frame in (
        ControlFrame(HANG_UP, 0, 7, ("a84b4c76e66710@pc33", "cmb2b-x")),
        ControlFrame(TRANSFER, 3, 0xFFFFFFFF, ("c1", "t", "sip:agent7@192.0.2.7:5070")),
        ControlFrame(ANSWER, 1, 1, ("", "leg-c", "", "é ünïcode")),
    ):
        assert decode(encode(frame)) == frame


def field(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


@pytest.mark.parametrize(
    "envelope",
    [
        b"",
        b"\x04",
        HEADER.pack(CONTROL | HANG_UP, 0, 1)[:-1],  # a short header
        HEADER.pack(HANG_UP, 0, 1) + field(b"c") + field(b"t"),  # not a control frame
        HEADER.pack(CONTROL | 9, 0, 1) + field(b"c") + field(b"t"),  # no such op
        HEADER.pack(CONTROL, 0, 1),  # no op at all
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"c"),  # a field short
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"c") + b"\x00",  # a length cut
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"c") + b"\xff\xff" + b"x" * 10,  # past end
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"c") + field(b"t") + b"extra",
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"\xff\xfe") + field(b"t"),  # not UTF-8
        HEADER.pack(CONTROL | ANSWER, 0, 1) + field(b"") * 3,  # an answer a field short
        HEADER.pack(CONTROL | HANG_UP, 0, 1) + field(b"x" * (MAX_FIELD + 1)) + field(b"t"),
    ],
)
def test_a_hostile_frame_is_refused(envelope: bytes) -> None:
    with pytest.raises(ControlFrameError):
        decode(envelope)


def test_a_frame_that_cannot_be_one_is_not_encoded() -> None:
    with pytest.raises(ControlFrameError):
        encode(ControlFrame(HANG_UP, 0, 1, ("only the call",)))
    with pytest.raises(ControlFrameError):
        encode(ControlFrame(HANG_UP, 0, 1, ("x" * (MAX_FIELD + 1), "t")))


class Runner:
    """A worker's B2BUA runner: the calls it holds, what it was asked, how it answers."""

    def __init__(self, holds: set[str], delay: float = 0.0) -> None:
        self.holds = holds
        self.delay = delay
        self.asked: list[tuple[str, ...]] = []

    async def hang_up(self, call_id: str, tag: str) -> bool:
        self.asked.append((call_id, tag))
        await asyncio.sleep(self.delay)
        return call_id in self.holds

    async def transfer(self, call_id: str, tag: str, to: str) -> tuple[str, str]:
        self.asked.append((call_id, tag, to))
        if to == "999":
            raise TransferTargetError(404, "no route for 999")
        if to == "boom":
            raise RuntimeError("a runner bug")
        return ("", "leg-c") if call_id in self.holds else ("elsewhere", "")


async def two_workers(
    directory: Path, runners: list[Runner], within: float = 2.0
) -> tuple[list[CallAffinity], list[WorkerControl]]:
    affinities, controls = [], []
    for index, runner in enumerate(runners):
        group = WorkerGroup(index, len(runners), directory)
        affinity = CallAffinity(group, [], lambda *_: None)
        control = WorkerControl(group, runner.hang_up, runner.transfer, within=within)
        control.send, affinity.control = affinity.send_control, control.receive
        await affinity.start()
        affinities.append(affinity)
        controls.append(control)
    return affinities, controls


def test_a_call_held_by_the_other_worker_is_hung_up_and_transferred_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    group = WorkerGroup(0, 2, tmp_path)
    mine, theirs = call_owned_by(group, 0), call_owned_by(group, 1)
    runners = [Runner({mine}), Runner({theirs})]

    async def scenario() -> list[object]:
        affinities, controls = await two_workers(tmp_path, runners)
        api = controls[0]
        seen: list[object] = [
            await api.hang_up(theirs, "tag-1"),
            await api.hang_up(mine, "tag-0"),  # its own: run here
            await api.hang_up("nowhere-" + theirs, "t"),
            await api.transfer(theirs, "tag-1", "sip:agent2@192.0.2.2"),
        ]
        nowhere = next(c for c in (f"x{n}" for n in range(100)) if group.owner(c.encode()) == 1)
        seen.append(await api.transfer(nowhere, "t", "sip:a@b"))
        with pytest.raises(TransferTargetError) as refused:
            await api.transfer(theirs, "tag-1", "999")
        seen.append((refused.value.status, refused.value.detail))
        with pytest.raises(WorkerControlError) as failed:
            await api.transfer(theirs, "tag-1", "boom")
        seen.append(failed.value.status)
        # Many at once: each answer reaches its own request.
        answers = await asyncio.gather(
            *(api.hang_up(theirs if n % 2 else "z", "t") for n in range(40))
        )
        seen.append(answers == [bool(n % 2) for n in range(40)] or answers)
        for affinity in affinities:
            affinity.close()
        for control in controls:
            await control.close()
        return seen

    with caplog.at_level(logging.ERROR):
        seen = asyncio.run(scenario())
    assert seen[:3] == [True, True, False]
    assert seen[3] == ("", "leg-c")
    assert seen[4] == ("elsewhere", "")
    assert seen[5] == (404, "no route for 999")
    assert seen[6] == 503 and "a runner bug" in caplog.text  # the owner's log, not silence
    assert seen[7] is True
    assert runners[0].asked == [(mine, "tag-0")]
    assert runners[1].asked[:2] == [(theirs, "tag-1"), ("nowhere-" + theirs, "t")]


def test_an_owner_not_listening_is_503_and_one_not_answering_504(tmp_path: Path) -> None:
    group = WorkerGroup(0, 2, tmp_path)
    theirs = call_owned_by(group, 1)

    async def scenario() -> tuple[WorkerControlError, WorkerControlError, bool]:
        affinities, controls = await two_workers(
            tmp_path, [Runner(set()), Runner({theirs}, 1.0)], 0.2
        )
        with pytest.raises(WorkerControlError) as slow:
            await controls[0].hang_up(theirs, "t")
        await asyncio.sleep(1.0)  # its late answer: dropped, no harm
        affinities[1].close()
        with pytest.raises(WorkerControlError) as gone:
            await controls[0].hang_up(theirs, "t")
        affinities[0].close()
        pending = bool(controls[0]._pending)
        return slow.value, gone.value, pending

    slow, gone, pending = asyncio.run(scenario())
    assert slow.status == 504 and "worker 1" in slow.detail and "did not answer" in slow.detail
    assert gone.status == 503 and "not listening" in gone.detail
    assert not pending


def test_a_malformed_frame_on_the_socket_is_a_log_line_and_the_next_one_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    group = WorkerGroup(0, 2, tmp_path)
    theirs = call_owned_by(group, 1)

    async def scenario() -> bool:
        affinities, controls = await two_workers(tmp_path, [Runner(set()), Runner({theirs})])
        hostile = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        hostile.connect(group.relay_path(1))
        for frame in (
            HEADER.pack(CONTROL | HANG_UP, 0, 1) + b"\xff",
            HEADER.pack(CONTROL | HANG_UP, 9, 1) + field(b"c") + field(b"t"),  # no worker 9
            HEADER.pack(CONTROL | ANSWER, 0, 77) + field(b"") * 4,  # never asked
            b"\x04",
        ):
            hostile.send(frame)
        hostile.close()
        await asyncio.sleep(0.05)
        done = await controls[0].hang_up(theirs, "t")
        for affinity in affinities:
            affinity.close()
        return done

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario())
    assert (
        caplog.text.count("unreadable control frame") == 1
        and "no worker of this edge (9)" in caplog.text
    )
