"""The lines of an edge worker's outbox journal, and reading them back whatever a crash left.

One record per line, JSON: a call event ``{"s": seq, "t": type, "v": schema
version, "d": data}`` or a mark ``{"c": seq}`` (every event up to ``seq``
settled: confirmed by the broker or given up).  Why lines: a process killed in
the middle of a ``write()`` leaves at most one torn last line, and a reader
that goes line by line loses that one only.  Reading never trusts the file
(a torn tail, a disk error, a hand's edit): a line that is not a record of
this code's making is skipped and counted, the first reason kept for the one
log line that reports them, its content never echoed.

The data is the event's fields as the accounting service hashes them
(``services.accounting.events.event_data``): the event read back is equal to
the one journaled, so publishing it again stores nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import orjson
from pydantic import ValidationError

from shared.contracts.calls import CALL_EVENT_TYPES, CallEvent

LINE_HEADS: Final[dict[type[CallEvent], bytes]] = {
    kind: b'"t":"%s","v":%d,"d":' % (key.encode(), kind.schema_version)
    for key, kind in CALL_EVENT_TYPES.items()
}
"""What precedes an event's fields in its line, by the event's type (which the publisher
checked against `CALL_EVENT_TYPES` as it wrote them)."""


def event_line(seq: int, event: CallEvent, written: bytes) -> bytes:
    """The journal line of ``event`` under sequence number ``seq``; ``written`` is its fields
    as JSON (`shared.contracts.call_event_json.written`, which its batch reuses)."""
    return b'{"s":%d,%b%b}\n' % (seq, LINE_HEADS[type(event)], written)


def mark_line(seq: int) -> bytes:
    """The line saying every event up to ``seq`` is settled."""
    return b'{"c":%d}\n' % seq


@dataclass
class JournalReading:
    """What the segments of a journal hold, read in order: events, marks, what was skipped."""

    events: dict[int, CallEvent] = field(default_factory=dict)
    """Every event read, by sequence number."""
    watermark: int = 0
    """The highest mark: every event up to it was settled."""
    last_seq: int = 0
    skipped: int = 0
    first_problem: str = ""

    def read(self, data: bytes, where: str) -> None:
        """Take in one segment's bytes; ``where`` names it in the reasons of skipped lines."""
        lines = data.split(b"\n")
        torn = lines.pop()  # what follows the last newline: nothing, unless a write was cut
        for number, line in enumerate(lines, 1):
            problem = self._take(line)
            if problem is not None:
                self._skip(f"{where} line {number}: {problem}")
        if torn:
            self._skip(f"{where}: a torn last line of {len(torn)} bytes")

    def pending(self) -> list[tuple[int, CallEvent]]:
        """The events not settled (above the watermark), in the order they were journaled."""
        return sorted(
            ((seq, event) for seq, event in self.events.items() if seq > self.watermark),
            key=lambda item: item[0],
        )

    def _skip(self, problem: str) -> None:
        self.skipped += 1
        if not self.first_problem:
            self.first_problem = problem

    def _take(self, line: bytes) -> str | None:
        """Record one line; the reason it is unusable, or ``None``."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "not JSON"
        if not isinstance(record, dict):
            return "not a journal record"
        if "c" in record:
            mark = record["c"]
            if type(mark) is not int:
                return "a mark without a sequence number"
            self.watermark = max(self.watermark, mark)
            return None
        seq, kind_name, version, data = (record.get(key) for key in ("s", "t", "v", "d"))
        if type(seq) is not int or seq < 1:
            return "an event without a sequence number"
        kind = CALL_EVENT_TYPES.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            return "not a call event type"
        if version != kind.schema_version:
            return f"{kind_name} of a schema version this code does not read"
        try:
            event = kind.model_validate(data)
        except ValidationError:
            return f"a malformed {kind_name}"
        self.events[seq] = event
        self.last_seq = max(self.last_seq, seq)
        return None
