"""What a routing hook sees and returns: a read-only request view and an immutable decision."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.sip.message import Request
from shared.sip.uri import SipUri, TelUri


@dataclass(frozen=True, slots=True)
class Target:
    """One next hop, tried in order: the Request-URI to send and the gateway it is, if one."""

    uri: str
    gateway_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the caller instead of routing (e.g. 403 for a blocked destination)."""

    status: int
    reason: str

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 699:
            raise ValueError("a rejection status must be 400..699")
        if not self.reason.isprintable():
            raise ValueError("the reason must be one printable line")


@dataclass(frozen=True, slots=True)
class Decision:
    """The routing decision: targets in order, the rule that matched, the routed number.

    `reject` set means: answer with it, ignore `targets`.  Build a changed
    decision with `dataclasses.replace(decision, targets=...)`.
    """

    targets: tuple[Target, ...]
    number: str
    rule_id: str | None = None
    reject: Reject | None = None
    notes: tuple[str, ...] = field(default=())
    """Free text a hook may add; the edge logs it with the call at debug level."""


class RequestView:
    """The parsed request, read-only: a hook decides; header manipulation edits."""

    __slots__ = ("_request", "source_ip", "source_port", "transport")

    def __init__(self, request: Request, source_ip: str, source_port: int, transport: str) -> None:
        self._request = request
        self.source_ip = source_ip
        self.source_port = source_port
        self.transport = transport

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def uri(self) -> str:
        return self._request.uri_text

    @property
    def uri_user(self) -> str | None:
        """The Request-URI user (or a tel: number): usually the dialled number."""
        uri = self._request.uri
        if isinstance(uri, SipUri):
            return uri.user
        return uri.number if isinstance(uri, TelUri) else None

    @property
    def from_user(self) -> str | None:
        uri = self._request.from_.uri
        return uri.user if isinstance(uri, SipUri) else None

    @property
    def to_user(self) -> str | None:
        uri = self._request.to.uri
        return uri.user if isinstance(uri, SipUri) else None

    @property
    def call_id(self) -> str:
        return self._request.call_id

    def header(self, name: str) -> str | None:
        return self._request.header(name)

    def headers(self, name: str) -> list[str]:
        return list(self._request.headers(name))
