"""The binding rules of RFC 3261 §10.3 steps 6 to 8, sans-IO.

Given an authenticated REGISTER, the AoR's current bindings, where the
request came from and the time, :func:`update_bindings` says either how the
bindings change or why the request is refused; :func:`ok_response` writes the
200 listing every binding with its remaining time. Reading and writing the
bindings atomically is the store's job (``services.registrar.bindings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.registrar.model import Binding, by_priority
from shared.sip.address import Address
from shared.sip.errors import SipError, SipParseError
from shared.sip.message import Request, Response
from shared.sip.params import format_params
from shared.sip.responses import make_response

_OWN_PARAMS = frozenset({"expires", "q"})


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """The registrar's limits (``CALLMESH_REGISTRAR_*``)."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10


@dataclass(frozen=True, slots=True)
class Origin:
    """How the REGISTER reached us: its source, and the edge (and connection) that took it."""

    host: str
    port: int
    transport: str
    edge: str
    edge_address: str | None = None
    connection_id: int | None = None

    @property
    def received(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{host}:{self.port}{suffix}"


@dataclass(slots=True)
class BindingUpdate:
    """The outcome of an accepted REGISTER: the bindings after it, and what changed."""

    current: list[Binding]
    added: list[Binding] = field(default_factory=list)
    refreshed: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.refreshed or self.removed)


def update_bindings(
    request: Request,
    aor: str,
    existing: Mapping[str, Binding],
    *,
    origin: Origin,
    policy: ExpiryPolicy,
    now: float,
) -> BindingUpdate:
    """Apply the REGISTER to ``existing`` (contact URI → binding); raise ``SipError`` to refuse.

    Refusals: 400 for ``*`` without ``Expires: 0`` or a malformed Contact, 400
    when a binding's Call-ID is reused with a CSeq not above the stored one
    (a stale or replayed request, step 7), 423 with Min-Expires for a too
    brief interval, 403 when the AoR would exceed its contacts.
    """
    call_id, cseq = request.call_id, request.cseq.seq
    if request.contact_is_wildcard:
        if request.expires != 0:
            raise SipParseError("Contact '*' requires Expires: 0")
        for binding in existing.values():
            _check_order(binding, call_id, cseq)
        return BindingUpdate(current=[], removed=list(existing.values()))
    bindings = dict(existing)
    update = BindingUpdate(current=[])
    header_expires = request.expires
    path = tuple(request.headers("path"))
    user_agent = request.header("user-agent")
    for contact in request.contacts:
        uri = str(contact.uri)
        expires = _expires_of(contact, header_expires, policy)
        old = bindings.get(uri)
        if old is not None:
            _check_order(old, call_id, cseq)
        if expires == 0:
            if old is not None:
                update.removed.append(bindings.pop(uri))
            continue
        binding = Binding(
            aor=aor,
            contact=uri,
            expires_at=now + expires,
            q=contact.q,
            params=format_params(tuple(p for p in contact.params if p[0] not in _OWN_PARAMS)),
            path=path,
            received=origin.received,
            transport=origin.transport,
            edge=origin.edge,
            edge_address=origin.edge_address,
            connection_id=origin.connection_id,
            user_agent=user_agent,
            call_id=call_id,
            cseq=cseq,
        )
        bindings[uri] = binding
        (update.added if old is None else update.refreshed).append(binding)
    if len(bindings) > policy.max_contacts and update.added:
        raise SipError(f"more than {policy.max_contacts} contacts", 403)
    update.current = by_priority(list(bindings.values()))
    return update


def _expires_of(contact: Address, header_expires: int | None, policy: ExpiryPolicy) -> int:
    """Step 6: the contact's expires, else the request's Expires, else the default; bounded."""
    expires = contact.expires
    if expires is None:
        expires = policy.default_expires if header_expires is None else header_expires
    if expires == 0:
        return 0
    if expires < policy.min_expires:
        raise SipError("Interval Too Brief", 423, (("Min-Expires", str(policy.min_expires)),))
    return min(expires, policy.max_expires)


def _check_order(binding: Binding, call_id: str, cseq: int) -> None:
    if binding.call_id == call_id and cseq <= binding.cseq:
        raise SipParseError("CSeq out of order for this Call-ID")


def ok_response(request: Request, update: BindingUpdate, now: float, to_tag: str) -> Response:
    """The 200 (step 8): every current binding with its remaining seconds; Path echoed."""
    headers = [
        ("Contact", f"<{b.contact}>;expires={b.remaining(now)}{_q(b)}{b.params}")
        for b in update.current
    ]
    headers.extend(("Path", value) for value in request.headers("path"))
    return make_response(request, 200, to_tag=to_tag, headers=headers)


def _q(binding: Binding) -> str:
    return "" if binding.q is None else f";q={binding.q:g}"
