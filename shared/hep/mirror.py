"""SIP messages and events of a process as HEP packets: what the edge and the health service share.

A `HepMirror` holds what ``CALLMESH_HEP_*`` configures beyond the destinations
(capture id, authentication key, methods skipped, sampling, whether logs are
sent) and one `HepSender`; its callers only say what they saw and when.  The
filters apply to SIP packets and logs alike: a skipped method's requests and
responses are not sent, and sampling hashes the correlation id, so a call (or a
probe) is mirrored whole or not at all.  Nothing here waits: a packet that
cannot be encoded is counted (`unencodable`) and dropped, the sender queues.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Final

from shared.hep.codec import TYPE_LOG, Encoder, HepError
from shared.hep.metrics import DROPPED
from shared.hep.sender import HepSender
from shared.hep.settings import CaptureSettings
from shared.sip.message import peek_header

SAMPLE_BUCKETS: Final = 10000


class HepMirror:
    """Encodes what a process saw into HEP packets for its sender, with HEP's filters."""

    def __init__(
        self,
        sender: HepSender,
        *,
        capture_id: int = 0,
        password: str = "",
        skip_methods: frozenset[str] = frozenset(),
        sample: float = 1.0,
        log_events: bool = False,
    ) -> None:
        self.sender = sender
        self.log_events = log_events
        """Whether events (the edge's calls, the health service's probes) go as log packets."""
        self._sip = Encoder(capture_id=capture_id, auth_key=password)
        self._logs = Encoder(capture_id=capture_id, auth_key=password, protocol_type=TYPE_LOG)
        self._skip = frozenset(method.encode() for method in skip_methods)
        self._sample_below = int(sample * SAMPLE_BUCKETS)

    def sip(
        self,
        data: bytes,
        now: float,
        protocol: int,
        source: tuple[str, int],
        destination: tuple[str, int],
        *,
        correlation: str,
    ) -> None:
        """One SIP message seen at ``now`` (wall clock) going from ``source`` to ``destination``
        over IP ``protocol``, unless a filter leaves it out."""
        if self._skip and self._skipped(data):
            return
        if self.sampled_out(correlation) or not self.sender.taking():
            return
        seconds = int(now)
        try:
            packet = self._sip.pack(
                source,
                destination,
                seconds,
                int((now - seconds) * 1_000_000),
                data,
                protocol=protocol,
                correlation_id=correlation,
            )
        except HepError:
            DROPPED["unencodable"] += 1
            return
        self.sender.offer(packet)

    def log(
        self, fields: dict[str, Any], now: float, at: tuple[str, int], correlation: str
    ) -> None:
        """An event as a log packet (protocol type 100, ``fields`` as JSON) whose two ends
        are ``at``, the process's own SIP address, when logs are asked for and sampled in."""
        if not self.log_events or self.sampled_out(correlation) or not self.sender.taking():
            return
        seconds = int(now)
        try:
            packet = self._logs.pack(
                at,
                at,
                seconds,
                int((now - seconds) * 1_000_000),
                json.dumps(fields, separators=(",", ":")).encode(),
                correlation_id=correlation,
            )
        except HepError:
            DROPPED["unencodable"] += 1
            return
        self.sender.offer(packet)

    def sampled_out(self, correlation: str) -> bool:
        return self._sample_below < SAMPLE_BUCKETS and (
            zlib.crc32(correlation.encode()) % SAMPLE_BUCKETS >= self._sample_below
        )

    def _skipped(self, data: bytes) -> bool:
        """A skipped method's name is in its CSeq: most messages are let by at once."""
        for method in self._skip:
            if method in data:
                return _method(data) in self._skip
        return False


def _method(data: bytes) -> bytes:
    """A request's method, or a response's from its CSeq (so OPTIONS answers go with OPTIONS)."""
    if not data.startswith(b"SIP/2.0"):
        space = data.find(b" ")
        return data[:space] if space > 0 else b""
    cseq = peek_header(data, "cseq")
    return cseq.split()[-1] if cseq else b""


def mirror_of(capture: CaptureSettings) -> HepMirror | None:
    """The mirror ``CALLMESH_HEP_*`` asks for, None without destinations; in a running loop."""
    destinations = capture.destinations
    if not destinations:
        return None
    password = capture.hep_password
    return HepMirror(
        HepSender(destinations, queue_size=capture.hep_queue),
        capture_id=capture.hep_capture_id,
        password=password.get_secret_value() if password is not None else "",
        skip_methods=capture.methods_skipped,
        sample=capture.hep_sample,
        log_events=capture.hep_log_events,
    )
