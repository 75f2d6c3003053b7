"""The bytes of one keepalive: an OPTIONS to the phone through its flow, or RFC 5626's CRLFs.

The OPTIONS goes where the REGISTER came from (the binding's ``received``), with
the phone's Contact as Request-URI and its AoR in To, so the phone (and any
ALG on the way) sees an ordinary request to itself.  Its Call-ID is a digest
of the binding's key, then ``.`` and the ping's CSeq: an answer is matched to
its binding by Call-ID alone, without keeping anything per ping, and each ping
is a new call to the phone (some take a known Call-ID for a retransmission).
The digest is keyed with a secret of the process (only the worker that pings
a binding matches its answers), so nobody else can name a binding's pings.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from shared.registrar.model import Location
from shared.sip.branch import new_branch, new_tag
from shared.sip.message import Request

CRLF_PING: Final = b"\r\n\r\n"
CALL_ID_MARK: Final = b"cm-ka-"
"""What every keepalive's Call-ID starts with (so its answer is told from any other)."""
USER_AGENT: Final = "callmesh-keepalive"
_KEY: Final = secrets.token_bytes(16)


def ping_call_id(aor: str, contact: str) -> str:
    """What every keepalive Call-ID of the binding starts with: a keyed digest of it, marked."""
    digest = hashlib.blake2b(f"{aor} {contact}".encode(), digest_size=12, key=_KEY).hexdigest()
    return f"cm-ka-{digest}"


def options_ping(location: Location, via_host: str, via_port: int, cseq: int) -> Request:
    """The OPTIONS keeping ``location``'s flow open, leaving from ``via_host:via_port``."""
    host = f"[{via_host}]" if ":" in via_host else via_host
    transport = location.transport.upper()
    return Request.build(
        "OPTIONS",
        location.contact,
        [
            ("Via", f"SIP/2.0/{transport} {host}:{via_port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{USER_AGENT}@{host}>;tag={new_tag()}"),
            ("To", f"<{location.aor}>"),
            ("Call-ID", f"{ping_call_id(location.aor, location.contact)}.{cseq}"),
            ("CSeq", f"{cseq} OPTIONS"),
            ("User-Agent", USER_AGENT),
        ],
    )
