"""Hanging up or transferring a B2BUA call held by another worker of this edge.

A B2BUA pair lives in the engine of the worker its caller's Call-ID hashes to
(`WorkerGroup.owner`: `runtime.affinity` hands every message of the call there), and only
that engine can end or move it (its legs' CSeqs, tags and transactions).  The API runs in
the edge's first worker; for a call another worker owns, it sends that worker a control
request over the worker's hand-on socket (the same channel as the messages, a frame kind
of its own: `CONTROL`), the owner runs its runner's `hang_up`/`transfer` (loading the pair
from Redis first if no worker holds it) and answers with the request's correlation id.

Bounds: an answer is awaited `ANSWER_WITHIN` seconds (then 504), an owner not listening (a
worker restarting) is a 503 at once, and at most `MAX_PENDING` requests wait at a time
(then 503), as at most `MAX_RUNNING` run in an owner.  The sockets are our own workers'
(the run directory's permissions), yet a frame is read defensively: a malformed one is a
log line and is dropped (`ControlFrameError`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from services.edge.runtime.affinity import CONTROL, WorkerGroup
from services.edge.runtime.transfer_targets import TransferTargetError

log = logging.getLogger("callmesh.edge")

HANG_UP: Final = 1
"""A request: hang up the pair (fields: the caller's Call-ID, the edge's tag on its leg)."""
TRANSFER: Final = 2
"""A request: transfer the pair (fields: Call-ID, tag, the target)."""
ANSWER: Final = 3
"""An answer (fields: why not or "", the new leg's Call-ID, a target error's status, detail)."""
FIELDS: Final = {HANG_UP: 2, TRANSFER: 3, ANSWER: 4}
_HEADER = struct.Struct("!HHI")
"""A frame: kind (`CONTROL` | its op), the sending worker's index, the correlation id; then
each field, its length (`_LENGTH`) and its UTF-8 text."""
_LENGTH = struct.Struct("!H")
MAX_FIELD: Final = 4096
"""Bytes of one field at most (a Call-ID from the API is 512 characters at most)."""
ANSWER_WITHIN: Final = 5.0
"""Seconds the owner has to answer (its pair may be loaded from Redis first)."""
MAX_PENDING: Final = 256
MAX_RUNNING: Final = 256
FAILED: Final = "failed"
"""An answer's `why`: the owner's runner raised (logged there)."""

LocalHangup = Callable[[str, str], Awaitable[bool]]
LocalTransfer = Callable[[str, str, str], Awaitable[tuple[str, str]]]


class ControlFrameError(ValueError):
    """A control frame that is not one: why."""


class WorkerControlError(Exception):
    """The owning worker could not be asked or did not answer: the HTTP status, and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ControlFrame:
    op: int
    sender: int
    correlation: int
    fields: tuple[str, ...]


def encode(frame: ControlFrame) -> bytes:
    """The frame's bytes; `ControlFrameError` for fields that do not fit."""
    if len(frame.fields) != FIELDS.get(frame.op):
        raise ControlFrameError(f"op {frame.op} takes {FIELDS.get(frame.op)} fields")
    parts = [_HEADER.pack(CONTROL | frame.op, frame.sender, frame.correlation & 0xFFFFFFFF)]
    for field in frame.fields:
        data = field.encode()
        if len(data) > MAX_FIELD:
            raise ControlFrameError(f"a field of {len(data)} bytes")
        parts += [_LENGTH.pack(len(data)), data]
    return b"".join(parts)


def decode(envelope: bytes) -> ControlFrame:
    """The frame in `envelope`; `ControlFrameError` for anything but a whole, known one."""
    if len(envelope) < _HEADER.size:
        raise ControlFrameError(f"{len(envelope)} bytes")
    kind, sender, correlation = _HEADER.unpack_from(envelope)
    op = kind & ~CONTROL
    if not kind & CONTROL or op not in FIELDS:
        raise ControlFrameError(f"kind {kind:#06x}")
    fields, at = [], _HEADER.size
    for _ in range(FIELDS[op]):
        if at + _LENGTH.size > len(envelope):
            raise ControlFrameError("truncated")
        (length,) = _LENGTH.unpack_from(envelope, at)
        at += _LENGTH.size
        if length > MAX_FIELD or at + length > len(envelope):
            raise ControlFrameError(f"a field of {length} bytes")
        try:
            fields.append(envelope[at : at + length].decode())
        except UnicodeDecodeError:
            raise ControlFrameError("a field not UTF-8") from None
        at += length
    if at != len(envelope):
        raise ControlFrameError(f"{len(envelope) - at} bytes after the fields")
    return ControlFrame(op, sender, correlation, tuple(fields))


class WorkerControl:
    """This worker's end of the control channel: asks the owner of a call, or runs it here.

    `send(worker, frame)`: False when that worker is not listening (`CallAffinity.send_control`,
    set once the hand-on socket is up); `hang_up`/`transfer`: this worker's runner's."""

    def __init__(
        self,
        group: WorkerGroup | None,
        hang_up: LocalHangup,
        transfer: LocalTransfer,
        *,
        within: float = ANSWER_WITHIN,
    ) -> None:
        self._group = group
        self._hang_up = hang_up
        self._transfer = transfer
        self._within = within
        self.send: Callable[[int, bytes], bool] = lambda _worker, _frame: False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[str, ...]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    def _owner(self, call_id: str) -> int | None:
        """The worker holding `call_id`'s pair when it is another one; None: this one."""
        group = self._group
        if group is None or group.count < 2:
            return None
        owner = group.owner(call_id.encode())
        return None if owner == group.index else owner

    async def hang_up(self, call_id: str, tag: str) -> bool:
        """`B2buaRunner.hang_up` of the worker owning the call; `WorkerControlError` if that
        worker cannot be asked or does not answer."""
        owner = self._owner(call_id)
        if owner is None:
            return await self._hang_up(call_id, tag)
        why = (await self._ask(owner, HANG_UP, (call_id, tag)))[0]
        if why == FAILED:
            raise WorkerControlError(503, f"worker {owner} of this edge failed to hang up")
        return not why

    async def transfer(self, call_id: str, tag: str, to: str) -> tuple[str, str]:
        """`B2buaRunner.transfer` of the worker owning the call (its `TransferTargetError`
        raised here too); `WorkerControlError` as for `hang_up`."""
        owner = self._owner(call_id)
        if owner is None:
            return await self._transfer(call_id, tag, to)
        why, leg, status, detail = await self._ask(owner, TRANSFER, (call_id, tag, to))
        if why == FAILED:
            raise WorkerControlError(503, f"worker {owner} of this edge failed to transfer")
        if status:  # the owner's TransferTargetError (a status it would not send: 503)
            code = int(status) if status.isascii() and status.isdigit() and len(status) == 3 else 0
            raise TransferTargetError(code if 400 <= code < 600 else 503, detail)
        return why, leg

    async def _ask(self, owner: int, op: int, fields: tuple[str, ...]) -> tuple[str, ...]:
        assert self._group is not None
        if len(self._pending) >= MAX_PENDING:
            raise WorkerControlError(503, "too many call control requests in flight; try again")
        correlation = next(self._ids) & 0xFFFFFFFF
        try:
            frame = encode(ControlFrame(op, self._group.index, correlation, fields))
        except ControlFrameError as error:
            raise WorkerControlError(422, f"not passed on to worker {owner}: {error}") from None
        answer: asyncio.Future[tuple[str, ...]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = answer
        try:
            if not self.send(owner, frame):
                detail = f"worker {owner} of this edge holds the call and is not listening"
                raise WorkerControlError(503, detail + " (restarting?); try again")
            async with asyncio.timeout(self._within):
                return await answer
        except TimeoutError:
            detail = f"worker {owner} of this edge holds the call and did not answer"
            raise WorkerControlError(504, f"{detail} within {self._within:g} s") from None
        finally:
            self._pending.pop(correlation, None)

    def receive(self, envelope: bytes) -> None:
        """A control frame from a sibling (`CallAffinity.control`): a request run here, or an
        answer to one of ours. Never raises: a bad frame is a log line."""
        try:
            frame = decode(envelope)
        except ControlFrameError as error:
            log.warning("edge: unreadable control frame from a sibling worker (%s)", error)
            return
        if frame.op == ANSWER:
            answer = self._pending.get(frame.correlation)
            if answer is not None and not answer.done():
                answer.set_result(frame.fields)
            return  # else: answered too late, or never asked
        group = self._group
        if group is None or not 0 <= frame.sender < group.count:
            log.warning("edge: a control request from no worker of this edge (%d)", frame.sender)
            return
        if len(self._running) >= MAX_RUNNING:
            self._answer(frame, (FAILED, "", "", ""))
            return
        task = asyncio.get_running_loop().create_task(self._run(frame))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, frame: ControlFrame) -> None:
        answer: tuple[str, str, str, str] = (FAILED, "", "", "")
        try:
            if frame.op == HANG_UP:
                call_id, tag = frame.fields
                answer = ("" if await self._hang_up(call_id, tag) else "elsewhere", "", "", "")
            else:
                call_id, tag, to = frame.fields
                why, leg = await self._transfer(call_id, tag, to)
                answer = (why, leg, "", "")
        except TransferTargetError as error:
            answer = ("target", "", str(error.status), error.detail[:1000])
        except Exception:  # the API's worker gets a 503, not silence
            log.exception("edge: a control request from worker %d failed", frame.sender)
        self._answer(frame, answer)

    def _answer(self, frame: ControlFrame, fields: tuple[str, ...]) -> None:
        assert self._group is not None
        reply = ControlFrame(ANSWER, self._group.index, frame.correlation, fields)
        if not self.send(frame.sender, encode(reply)):
            log.warning("edge: worker %d is gone; its control answer is dropped", frame.sender)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
