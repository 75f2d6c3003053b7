"""Where protection meets the proxy: flood blocking, scanners, trusted callers.

The order per message, cheapest refusal first:
1. `drop_flood` on the raw bytes (before parsing): a blocked source costs a dict probe;
2. `screen` on a parsed request outside any transaction: scanners from
   untrusted sources are dropped or answered 403 statelessly.  Once a
   source is flagged, only its requests that look like a scanner's are
   refused (a scanner's User-Agent, or no credentials and no dialog of
   ours): a phone behind the same NAT that authenticates,
   or a call in progress along our Route, is still served;

The call limits, shared by the whole cluster, are `services.edge.policy.limits`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.edge import metrics
from services.edge.protection import (
    FloodDetector,
    FloodVerdict,
    ProtectionSettings,
    ScannerDetector,
    ScanVerdict,
)
from services.edge.proxy.actions import Action, Publish, Send
from services.edge.proxy.interfaces import Interfaces
from shared.acl import AddressAcl
from shared.contracts.protection import ScannerFlagged, SourceBlocked
from shared.sip.message import Request
from shared.sip.responses import make_response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri

log = logging.getLogger("callmesh.edge.protection")

Trusted = Callable[[Destination], bool]
"""Who may call without digest authentication and is exempt from scanner checks:
the edge's `services.edge.policy.trust.SourceTrust` (trusted networks and gateways)."""


class Guard:
    __slots__ = (
        "allowlist",
        "edge_name",
        "flood",
        "interfaces",
        "scanner",
        "settings",
        "trusted",
    )

    def __init__(
        self,
        settings: ProtectionSettings,
        edge_name: str,
        trusted: Trusted,
        interfaces: Interfaces | None = None,
    ) -> None:
        self.settings = settings
        self.edge_name = edge_name
        acl = settings.acl()
        self.trusted = trusted
        self.interfaces = interfaces
        """Ours, to tell a request along our own Route (a dialog of ours) from a stranger's."""
        self.allowlist: AddressAcl | None = None
        """The operator's allow-list: never flagged as scanners nor flood-blocked."""
        self.flood = FloodDetector(settings.flood, allow=acl)
        self.scanner = ScannerDetector(settings.scanner)

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
        if verdict == FloodVerdict.ALLOW:
            return False
        if self.trusted(source):
            # A trusted peer or a gateway of the table (a carrier's trunk at hundreds of
            # calls a second) is never flood-blocked, as pike runs only for untrusted
            # sources in Kamailio's and OpenSIPS' usual scripts. Asked only when the
            # count would block, so the per-packet cost stays one dict probe; the count
            # starts again, and the trust is asked again each time it would block.
            self.flood.clear(source.host)
            return False
        if verdict == FloodVerdict.BLOCKED:
            flood = self.settings.flood
            rate = self.flood.rate(source.host, now)
            log.warning(
                "blocked flooding source %s (%.0f requests in %.1f s)",
                source.host,
                rate,
                flood.period,
            )
            metrics.SOURCES_BLOCKED.value += 1
            event = SourceBlocked(
                source=source.host,
                rate=rate,
                limit=flood.limit,
                period=flood.period,
                block_time=flood.block_time,
                edge=self.edge_name,
            )
            actions.append(Publish(event))
        metrics.FLOOD_DROPPED.value += 1
        return True

    def screen(
        self,
        request: Request,
        source: Destination,
        now: float,
        actions: list[Action],
        *,
        known: bool = False,
    ) -> bool:
        """True when the request is dealt with here (a scanner's).

        `known`: the request proved it belongs to a dialog of ours (no scanner checks).
        A BYE's leases are freed by the core once the BYE passed the dialog check
        (`services.edge.policy.limits`), so a forged BYE cannot free a caller's slot.
        """
        if known or self.trusted(source) or self.allowed(source):
            return False
        scanner, host = self.scanner, source.host
        flagged = scanner.is_flagged(host, now)
        agent = request.header("user-agent")
        verdict = scanner.check(host, request.method, agent, _target_user(request), now)
        if verdict == ScanVerdict.PASS:
            return False
        by_agent = agent is not None and scanner.is_scanner_agent(agent)
        if not flagged:
            log.warning("flagged %s as a scanner (%s)", host, "user-agent" if by_agent else "sweep")
            event = ScannerFlagged(
                source=host,
                reason="user-agent" if by_agent else "sweep",
                flag_time=scanner.settings.flag_time,
                edge=self.edge_name,
            )
            actions.append(Publish(event))
        if not by_agent and (_has_credentials(request) or self._along_our_route(request)):
            metrics.SCANNER_REQUESTS["served"] += 1
            return False
        metrics.SCANNER_REQUESTS[verdict.name.lower()] += 1
        if verdict == ScanVerdict.ANSWER and request.method != "ACK":
            actions.append(Send(make_response(request, 403).to_bytes(), source))
        return True

    def allowed(self, source: Destination) -> bool:
        allowlist = self.allowlist
        return allowlist is not None and allowlist.trusts(
            source.host, source.port, source.transport
        )

    def set_allowlist(self, allowlist: AddressAcl | None) -> None:
        """Apply a new allow-list: its sources' flood blocks and scanner flags are lifted."""
        self.allowlist = allowlist
        self.flood.set_allowlist(allowlist)
        if allowlist is None:
            return
        for host in self.scanner.flagged_hosts():
            if allowlist.trusts(host, 0, "udp"):
                self.scanner.clear(host)

    def clear(self, kind: str, host: str) -> bool:
        """An operator's clear (``flood`` or ``scanner``); False when this worker had none."""
        if kind == "flood":
            return self.flood.clear(host)
        if kind == "scanner":
            return self.scanner.clear(host)
        return False

    def _along_our_route(self, request: Request) -> bool:
        """In-dialog and its first Route is ours: a dialog this edge (or cluster) set up."""
        interfaces = self.interfaces
        if interfaces is None or request.to_tag is None:
            return False
        routes = request.routes
        if not routes:
            return False
        uri = routes[0].uri
        return isinstance(uri, SipUri) and interfaces.is_ours(
            uri.host, uri.port, (uri.param("transport") or "udp").lower()
        )


def _has_credentials(request: Request) -> bool:
    """Digest credentials for a challenge of ours; checking them is authentication's job
    (a wrong guess is counted as a failed authentication, not waved through)."""
    return request.has_header("proxy-authorization") or request.has_header("authorization")


def _target_user(request: Request) -> str | None:
    uri = request.to.uri if request.method == "REGISTER" else request.uri
    return uri.user if isinstance(uri, SipUri) else None
