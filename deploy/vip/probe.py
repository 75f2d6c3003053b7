"""How long a SIP address stops answering: OPTIONS every few milliseconds, each answer timed.

``python -m deploy.vip.probe HOST PORT SECONDS [INTERVAL]`` runs where the
calls come from (the lab's caller namespace) and prints one JSON object:
``{"sent": [[sent, answered], ...]}``, times on the machine's monotonic clock
(the same in every network namespace), ``answered`` null for an OPTIONS never
answered.  Each OPTIONS is a new transaction (its own Call-ID and branch), so
an answer names the probe it answers and a retransmission never hides a gap.
:func:`outage` reads the gap a failure made: from the failure to the first
probe sent after it that was answered, which is what a new call placed then
waits at most.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import uuid
from contextlib import suppress

CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def options(host: str, port: int, local: tuple[str, int], call_id: str) -> bytes:
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:probe@{local[0]}>;tag={call_id[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def probe(host: str, port: int, seconds: float, interval: float) -> list[list[float | None]]:
    """[sent, answered or None] for every OPTIONS sent over `seconds`."""
    sent: dict[bytes, list[float | None]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        local = sock.getsockname()
        sock.settimeout(interval)
        end = time.monotonic() + seconds
        next_send = time.monotonic()
        while (now := time.monotonic()) < end:
            if now >= next_send:
                call_id = uuid.uuid4().hex
                sent[call_id.encode()] = [now, None]
                with suppress(OSError):  # a dead box's ICMP unreachable, reported on this socket
                    sock.send(options(host, port, local, call_id))
                next_send = now + interval
            sock.settimeout(max(0.001, next_send - time.monotonic()))
            try:
                data = sock.recv(65535)
            except (TimeoutError, OSError):
                continue
            found = CALL_ID.search(data)
            if data.startswith(b"SIP/2.0 200") and found and found.group(1) in sent:
                entry = sent[found.group(1)]
                if entry[1] is None:
                    entry[1] = time.monotonic()
    return list(sent.values())


def outage(probes: list[list[float | None]], failed_at: float) -> float:
    """Seconds from `failed_at` (when the failure was complete) until the address answered
    again for good: the sending of the first answered probe after the last unanswered one."""
    lost = [sent for sent, answered in probes if sent is not None and answered is None]
    after = [sent for sent in lost if sent >= failed_at]
    last_lost = max(after, default=failed_at)
    for sent, answered in probes:
        assert sent is not None
        if sent > last_lost and answered is not None:
            return max(0.0, sent - failed_at)
    raise AssertionError("no probe was answered after the failure")


def main(argv: list[str]) -> int:
    host, port, seconds = argv[0], int(argv[1]), float(argv[2])
    interval = float(argv[3]) if len(argv) > 3 else 0.02
    print(json.dumps({"sent": probe(host, port, seconds, interval)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
