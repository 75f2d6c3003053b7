"""Calls to and from the registrar's subscribers, as the proxy core decides them (sans-IO).

`Subscribers` bundles what the core needs beyond number routing: the
location `Directory`, the flow tokens, the nonce keeper for 407 challenges,
who is trusted, and the offset from the core's clock to wall time (nonces
carry wall time, so every edge and registrar can check them).

`binding_hops` turns an AoR's bindings into next hops (highest q first; equal
q forked in parallel by the core).  A binding is reached at its Contact when
that is where its REGISTER came from over UDP; otherwise (NAT, TCP) only the
edge that took the REGISTER can reach it, through the address or connection
it came from: directly if that is this edge, else via that edge with a flow
token in a Route (see `services.edge.proxy.flows`).  Path (RFC 3327) wins over
both: the request follows the Path the phone registered with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.edge import metrics
from services.edge.location import Directory
from services.edge.proxy.flows import FlowTokens
from services.edge.proxy.interfaces import Interfaces
from services.edge.proxy.routes import Hop
from shared.dns import NameSpec
from shared.dns.locate import name_spec
from shared.protection import BlockList, WrongCredentialsError, log_auth_failure
from shared.registrar.model import Location
from shared.sip.address import parse_address
from shared.sip.auth.check import Verdict, challenge_headers, credentials_for, judge, nonce_count
from shared.sip.auth.nonces import NonceKeeper, NonceState
from shared.sip.auth.offer import DigestOffer
from shared.sip.errors import SipError, SipParseError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import SipUri, Uri, parse_uri

Trust = Callable[[Destination], bool]


@dataclass(slots=True)
class Subscribers:
    directory: Directory
    flows: FlowTokens
    nonces: NonceKeeper
    trusted: Trust
    offer: DigestOffer = field(default_factory=DigestOffer)
    """The algorithms of each realm's challenges (``CALLMESH_DIGEST_*ALGORITHMS``)."""
    wall_offset: float = 0.0
    """Wall time minus the core's clock; the adapter keeps it current."""
    blocks: BlockList = field(default_factory=BlockList)
    """The cluster's authentication blocks (accounts, sources), kept current by the feed."""


def binding_hops(
    bindings: tuple[Location, ...], flows: FlowTokens, interfaces: Interfaces
) -> list[Hop]:
    hops = []
    for binding in bindings:
        try:
            hops.append(binding_hop(binding, flows, interfaces))
        except SipError:
            continue  # an unusable stored URI: the other bindings may still answer
    return hops


def binding_hop(binding: Location, flows: FlowTokens, interfaces: Interfaces) -> Hop:
    contact = binding.contact
    q = binding.priority
    if binding.path:  # a host given by name: RFC 3263 when the hop is sent, as for a Route
        first = parse_address(binding.path[0]).uri
        return Hop(contact, destination_of(first), q=q, routes=binding.path, name=_name(first))
    direct = destination_of(parse_uri(contact))
    received = destination_of(parse_uri(binding.received))
    if binding.transport == "udp" and direct.address == received.address:
        return Hop(contact, direct, q=q)
    flow = Destination(received.transport, received.host, received.port, binding.connection_id)
    token = flows.mint(flow)
    edge = parse_uri(binding.edge_address) if binding.edge_address else None
    if not isinstance(edge, SipUri) or interfaces.is_ours(
        edge.host, edge.port, (edge.param("transport") or "udp").lower()
    ):
        return Hop(contact, flow, q=q, flow_token=token)
    route = f"<{binding.edge_address};lr>"  # the flow and its signature added per call
    return Hop(
        contact, destination_of(edge), q=q, routes=(route,), remote_flow=token, name=_name(edge)
    )


def _name(uri: Uri) -> NameSpec | None:
    """What RFC 3263 resolves a next hop's host to, if it is a name (`NextHop._expand_name`)."""
    return name_spec(uri) if isinstance(uri, SipUri) else None


def authenticate(request: Request, subscribers: Subscribers, now: float, source: str) -> None:
    """Return if the request proves a subscriber's password; raise 407 (challenge) or 403.

    A blocked account or `source` gets 403 before any challenge, whatever it
    sends; wrong credentials raise `WrongCredentialsError` (a 403, counted first).

    The realm is the caller's domain (From), which must be a local domain; the
    digest user must be the From user.  Each nonce-count is good once, as for
    REGISTER: a replayed request is challenged again.  May raise `Missing`
    (domain, HA1, the nonce-count's claim in Redis).
    """
    caller = request.from_.uri
    if not isinstance(caller, SipUri) or not caller.user:
        raise SipError("Forbidden (caller is not a subscriber)", 403)
    realm = caller.host.lower()
    if not subscribers.directory.is_local_domain(realm, now):
        raise SipError("Forbidden (caller is not a subscriber)", 403)
    wall = now + subscribers.wall_offset
    _refuse_blocked(request, subscribers, caller.user, realm, source=source, wall=wall)
    credentials = credentials_for(
        request, realm, subscribers.offer.for_realm(realm), "proxy-authorization"
    )
    if credentials is None:
        raise _challenge(subscribers, realm, wall)
    state = subscribers.nonces.check(str(credentials.nonce), realm, wall)
    if state is NonceState.INVALID:
        raise _challenge(subscribers, realm, wall)
    if credentials.username != caller.user or credentials.uri != request.uri_text:
        raise SipError("Forbidden (credentials are not the caller's)", 403)
    ha1 = subscribers.directory.ha1(caller.user, realm, credentials.algorithm, now)
    verdict = judge(credentials, request, ha1, state)
    if verdict is Verdict.FORBIDDEN:
        raise WrongCredentialsError(caller.user, realm)
    if verdict is Verdict.STALE:
        raise _challenge(subscribers, realm, wall, stale=True)
    count = nonce_count(credentials)
    if count is None:
        raise SipParseError("malformed digest nc")
    if not subscribers.directory.claim_nonce_count(str(credentials.nonce), count, now):
        raise _challenge(subscribers, realm, wall)  # a replay: its nonce-count was used
    request.remove_header("proxy-authorization")  # ours, no use to the next hop (§22.3)


def challenge_register(request: Request, subscribers: Subscribers, now: float, source: str) -> None:
    """Raise the registrar's 401 for a REGISTER without credentials for its realm (To's domain),
    or 403 for one of a blocked account or `source`, with credentials or without.

    The first REGISTER of every registration is one of these; its answer is
    a fresh nonce, which the edge mints as well as the registrar does (they
    share the secret and the offered algorithms), so it is answered here
    without the registrar round trip: half the registrar's work.
    """
    to_uri = request.to.uri
    if not isinstance(to_uri, SipUri):
        return  # the registrar answers 416
    realm = to_uri.host.lower()
    wall = now + subscribers.wall_offset
    _refuse_blocked(request, subscribers, to_uri.user or "", realm, source=source, wall=wall)
    if credentials_for(request, realm, subscribers.offer.for_realm(realm)) is None:
        raise _challenge(subscribers, realm, wall, registrar=True)


def _refuse_blocked(
    request: Request,
    subscribers: Subscribers,
    user: str,
    realm: str,
    *,
    source: str,
    wall: float,
) -> None:
    """403 while the account or the source is blocked: the same answer for any user."""
    if subscribers.blocks.refuses(f"{user}@{realm}", source, wall):
        log_auth_failure(source, user, realm, request.method, "blocked")
        metrics.AUTH_FAILURES["blocked"] += 1
        raise SipError("Forbidden", 403)


def _challenge(
    subscribers: Subscribers,
    realm: str,
    wall: float,
    *,
    stale: bool = False,
    registrar: bool = False,
) -> SipError:
    header = "WWW-Authenticate" if registrar else "Proxy-Authenticate"
    algorithms = subscribers.offer.for_realm(realm)
    headers = challenge_headers(
        subscribers.nonces, realm, wall, algorithms, stale=stale, header=header
    )
    if registrar:
        return SipError("Unauthorized", 401, tuple(headers))
    return SipError("Proxy Authentication Required", 407, tuple(headers))
