"""Where protection meets the proxy: flood blocking, scanners, trusted callers, call limits.

The order per message, cheapest refusal first:
1. `drop_flood` on the raw bytes (before parsing): a blocked source costs a dict probe;
2. `screen` on a parsed request outside any transaction: scanners from
   untrusted sources are dropped or answered 403 statelessly; a BYE frees
   its call's leases;
3. `admit_call` before routing a number: untrusted sources are refused
   (`TrustedSources` is the predicate authentication hooks into), then the
   concurrent-call limits;
4. `responded` on every response sent upstream: a final non-2xx to an INVITE
   frees its leases.
"""

from __future__ import annotations

import logging
from typing import Final

from services.edge.policy import metrics
from services.edge.protection import (
    AddressAcl,
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
_UNTRUSTED_REASON: Final = "Forbidden (authentication required)"


class TrustedSources:
    """Who may call numbers without digest authentication (`CALLMESH_TRUSTED_NETWORKS`).

    The one predicate for "is this source a trusted peer": the edge refuses
    untrusted callers with it today, and subscriber authentication (407
    challenges) is meant to ask it which requests to challenge.
    """

    __slots__ = ("acl",)

    def __init__(self, acl: AddressAcl) -> None:
        self.acl = acl

    def __call__(self, source: Destination) -> bool:
        return self.acl.match(source.host, source.port, source.transport) is not None


class Guard:
    __slots__ = (
        "_calls", "_next_expiry", "by_source", "by_subscriber", "edge_name", "flood",
        "scanner", "settings", "trusted",
    )  # fmt: skip

    def __init__(self, settings: ProtectionSettings, edge_name: str) -> None:
        self.settings = settings
        self.edge_name = edge_name
        acl = settings.acl()
        self.trusted = TrustedSources(acl)
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
        self, request: Request, source: Destination, now: float, actions: list[Action]
    ) -> bool:
        """True when the request is dealt with here (a scanner's); frees a BYE's leases."""
        if request.method == "BYE":
            self.release(request.call_id)
        if self.trusted(source):
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
        """Before routing a number: raises `SipError` (403, 486) when the call may not go."""
        if not self.trusted(source):
            metrics.UNTRUSTED_REFUSED.inc()
            raise SipError(_UNTRUSTED_REASON, 403)
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
