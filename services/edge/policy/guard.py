"""Where protection meets the proxy: flood blocking, scanners, trusted callers, call limits.

The order per message, cheapest refusal first:
1. `drop_flood` on the raw bytes (before parsing): a blocked source costs a dict probe;
2. `screen` on a parsed request outside any transaction: scanners from
   untrusted sources are dropped or answered 403 statelessly; a BYE frees
   its call's leases;
3. `admit_call` before routing a number (after untrusted callers have
   authenticated): the concurrent-call limits;
4. `responded` on every response sent upstream: a final non-2xx to an INVITE
   frees its leases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from services.edge.policy import metrics
from services.edge.protection import (
    CallLimiter,
    FloodDetector,
    ProtectionSettings,
    ScannerDetector,
    ScanVerdict,
    SourceBlocked,
    Verdict,
)
from services.edge.proxy.actions import Action, Publish, Send
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.responses import make_response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri

log = logging.getLogger("callmesh.edge.protection")

EXPIRY_INTERVAL: Final = 60.0


Trusted = Callable[[Destination], bool]
"""Who may call without digest authentication and is exempt from scanner checks:
the edge's `services.edge.trust.SourceTrust` (trusted networks and gateways)."""


class Guard:
    __slots__ = (
        "_calls", "_next_expiry", "by_source", "by_subscriber", "edge_name", "flood",
        "scanner", "settings", "trusted",
    )  # fmt: skip

    def __init__(self, settings: ProtectionSettings, edge_name: str, trusted: Trusted) -> None:
        self.settings = settings
        self.edge_name = edge_name
        acl = settings.acl()
        self.trusted = trusted
        self.flood = FloodDetector(settings.flood, allow=acl)
        self.scanner = ScannerDetector(settings.scanner)
        calls = settings.calls
        self.by_subscriber = CallLimiter(calls.per_subscriber, calls.max_call_duration)
        self.by_source = CallLimiter(calls.per_source, calls.max_call_duration)
        self._calls: dict[str, tuple[str, str, float]] = {}
        """Call-ID → (subscriber, source, start) of the calls holding leases."""
        self._next_expiry = 0.0

    def drop_flood(
        self, data: bytes, source: Destination, now: float, actions: list[Action]
    ) -> bool:
        """True when the message must be dropped: its source is (now) blocked."""
        if data.startswith(b"SIP/"):
            return False  # responses answer our requests: not a flood of theirs
        return self.flooding(source, now, actions)

    def flooding(self, source: Destination, now: float, actions: list[Action]) -> bool:
        """Count one request (or new TCP connection) of `source`; True: it is (now) blocked."""
        verdict = self.flood.check(source.host, now, source.port, source.transport)
        if verdict == Verdict.ALLOW:
            return False
        if verdict == Verdict.BLOCKED:
            flood = self.settings.flood
            rate = self.flood.rate(source.host, now)
            log.warning("blocked flooding source %s (%.0f requests in %.1f s)",
                        source.host, rate, flood.period)  # fmt: skip
            metrics.SOURCES_BLOCKED.inc()
            event = SourceBlocked(
                source=source.host, rate=rate, limit=flood.limit, period=flood.period,
                block_time=flood.block_time, edge=self.edge_name,
            )  # fmt: skip
            actions.append(Publish(event))
        metrics.FLOOD_DROPPED.inc()
        return True

    def screen(
        self, request: Request, source: Destination, now: float, actions: list[Action],
        *, known: bool = False,
    ) -> bool:  # fmt: skip
        """True when the request is dealt with here (a scanner's); frees a BYE's leases.

        `known`: the request proved it belongs to a dialog of ours (no scanner checks).
        """
        if request.method == "BYE":
            self.release(request.call_id)
        if known or self.trusted(source):
            return False
        target = _target_user(request)
        verdict = self.scanner.check(
            source.host, request.method, request.header("user-agent"), target, now
        )
        if verdict == ScanVerdict.PASS:
            return False
        metrics.SCANNER_REQUESTS.labels(verdict.name.lower()).inc()
        if verdict == ScanVerdict.ANSWER and request.method != "ACK":
            actions.append(Send(make_response(request, 403).to_bytes(), source))
        return True

    def admit_call(self, request: Request, source: Destination, now: float) -> None:
        """Before routing a number: raises `SipError` (486) past a concurrent-call limit.

        Who may call at all is settled before: untrusted callers authenticate
        (407) as subscribers first.
        """
        if request.method != "INVITE" or request.to_tag is not None:
            return
        if now >= self._next_expiry:
            self._next_expiry = now + EXPIRY_INTERVAL
            self.by_subscriber.expire(now)
            self.by_source.expire(now)
            oldest = now - self.settings.calls.max_call_duration
            self._calls = {k: held for k, held in self._calls.items() if held[2] >= oldest}
        call_id = request.call_id
        subscriber = _subscriber(request)
        if not self.by_subscriber.acquire(subscriber, call_id, now):
            metrics.CALL_LIMIT_REFUSED.labels("subscriber").inc()
            raise SipError("Busy Here (subscriber call limit)", 486)
        if not self.by_source.acquire(source.host, call_id, now):
            self.by_subscriber.release(subscriber, call_id)
            metrics.CALL_LIMIT_REFUSED.labels("source").inc()
            raise SipError("Busy Here (source call limit)", 486)
        if self.by_subscriber.limit or self.by_source.limit:
            self._calls[call_id] = (subscriber, source.host, now)

    def responded(self, request: Request, response: Response) -> None:
        """A response went upstream: a failed INVITE frees its leases."""
        if response.status >= 300 and request.method == "INVITE" and request.to_tag is None:
            self.release(request.call_id)

    def release(self, call_id: str) -> None:
        held = self._calls.pop(call_id, None)
        if held is not None:
            self.by_subscriber.release(held[0], call_id)
            self.by_source.release(held[1], call_id)

    def active_calls(self, subscriber: str | None = None, source: str | None = None) -> int:
        if subscriber is not None:
            return self.by_subscriber.active(subscriber)
        return self.by_source.active(source or "")


def _subscriber(request: Request) -> str:
    """The caller as `user@host` of From (authentication will supply the real username)."""
    uri = request.from_.uri
    if isinstance(uri, SipUri):
        return f"{uri.user or ''}@{uri.host}"
    return str(uri)


def _target_user(request: Request) -> str | None:
    uri = request.to.uri if request.method == "REGISTER" else request.uri
    return uri.user if isinstance(uri, SipUri) else None
