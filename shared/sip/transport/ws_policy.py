"""Who may open a SIP WebSocket (RFC 7118 §4.1), and how a refused upgrade is answered.

Why a policy apart from the connections: the WS and WSS tables share it (one
`CALLMESH_WS_ORIGINS`, one ping interval), and a refusal is the same whichever
table saw it: an HTTP 4xx with a one-line reason in its body, a counter by
reason, and one log line per reason at most every `REFUSAL_LOG_INTERVAL` (the
number refused in between said in the next), so a scanner cannot flood the log.

The upgrade must offer the `sip` subprotocol (a WebSocket without it speaks
something else).  `Origin` protects a browser's user from another site's page
opening a SIP WebSocket in their name: with an allow-list set, a request that
carries an Origin must carry one of it.  A client that sends none is no
browser, and could send any Origin it liked, so it is let in; digest
authentication guards the SIP itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from wsproto.events import Request

from shared.settings import Settings
from shared.sip.transport.base import LogThrottle
from shared.sip.transport.metrics import WS_REFUSED

log = logging.getLogger(__name__)

SUBPROTOCOL: Final = "sip"
SHOWN_CHARS: Final = 64
"""How much of a client's own value a refusal repeats (body and log line alike)."""
_REASON_PHRASES: Final = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an upgrade is refused: the counter's reason, the HTTP status, what the body says."""

    reason: str
    status: int
    text: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self) -> bytes:
        """The whole HTTP response (the connection is closed after it)."""
        body = f"{self.text}\n".encode()
        phrase = _REASON_PHRASES.get(self.status, "Bad Request")
        lines = [f"HTTP/1.1 {self.status} {phrase}".encode()]
        lines += [name + b": " + value for name, value in self.headers]
        lines += [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass(slots=True)
class WebSocketPolicy:
    """The `CALLMESH_WS_*` settings, and the refusal log's memory."""

    origins: frozenset[str] = frozenset()
    """Allowed `Origin` values, lower-case; empty: any."""
    ping_interval: float = 30.0
    _throttle: LogThrottle = field(default_factory=LogThrottle)

    @classmethod
    def of(cls, settings: Settings) -> WebSocketPolicy:
        return cls(allowed_origins(settings.ws_origins.split(",")), settings.ws_ping_interval)

    def judge(self, request: Request) -> Refusal | None:
        """None when the upgrade may be accepted (with the `sip` subprotocol)."""
        if SUBPROTOCOL not in (name.lower() for name in request.subprotocols):
            offered = shown(", ".join(request.subprotocols)) or "none"
            text = f"the sip WebSocket subprotocol is required (offered: {offered})"
            return Refusal("subprotocol", 400, text)
        origin = origin_of(request)
        if self.origins and origin is not None and origin.lower() not in self.origins:
            return Refusal("origin", 403, f"origin {shown(origin)} is not allowed")
        return None

    def refused(self, refusal: Refusal, transport: str, peer: tuple[str, int], now: float) -> None:
        """Count the refusal; log it unless its reason was logged just before."""
        WS_REFUSED.labels(refusal.reason).inc()
        unlogged = self._throttle.due(refusal.reason, now)
        if unlogged is None:
            return
        log.warning(
            "%s %s:%d: upgrade refused, %d: %s (%d more refused for %s since the last such line)",
            transport,
            *peer,
            refusal.status,
            refusal.text,
            unlogged,
            refusal.reason,
        )


def allowed_origins(values: Iterable[str]) -> frozenset[str]:
    """`https://app.example.com/` and `HTTPS://App.example.com` are the same origin."""
    return frozenset(value.strip().rstrip("/").lower() for value in values if value.strip())


def shown(value: str) -> str:
    """A client's value as a refusal may repeat it: printable ASCII, at most `SHOWN_CHARS`.

    Why: the body goes back to the client and the text into our log; a 16 KB Origin
    would be reflected whole and a control character would forge log lines.
    """
    printable = "".join(c if " " <= c <= "~" else "?" for c in value[: SHOWN_CHARS + 1])
    if len(value) <= SHOWN_CHARS:
        return printable
    return f"{printable[:SHOWN_CHARS]}… ({len(value)} characters)"


def origin_of(request: Request) -> str | None:
    for name, value in request.extra_headers:
        if name.lower() == b"origin":
            return bytes(value).decode("latin-1").strip()
    return None


def not_websocket(status: int, text: str, headers: Iterable[tuple[bytes, bytes]]) -> Refusal:
    """An upgrade wsproto could not read (a plain HTTP request, garbage, a bad version)."""
    kept = tuple((bytes(name), bytes(value)) for name, value in headers)
    return Refusal("not_websocket", status if 400 <= status < 500 else 400, text, kept)
