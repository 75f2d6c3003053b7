"""What the proxy core asks its adapter to do: send bytes, publish an event, ask and answer.

`Send` is the transaction layer's own: what a transaction sends leaves as it
came, unwrapped.  `Register`, `Lookup`, `Resolve`, `ResolveAck`, `AuthFailed`, `Acquire`,
`Screen` and `Media` are round trips: the adapter runs them off the call path
and feeds the outcome back (`Proxy.registered`, `Proxy.resume`, `Proxy.ack_resolved`,
`Proxy.limited`, `Proxy.screened`, `Proxy.media_done`); the core holds the request's server
transaction (or the response, or a stateless ACK) meanwhile, so retransmissions are absorbed
(and, once answered, answered again with the same response).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.edge.location import Query
from services.edge.proxy.routes import Hop
from shared.contracts.event import Event
from shared.dns import RecordKey
from shared.fraud.rules import FraudQuery
from shared.limits.model import LimitQuery
from shared.sip.transaction import Send, ServerTransaction
from shared.sip.transport.destination import Destination

__all__ = [
    "Acquire", "Action", "AuthFailed", "HandOff", "Lookup", "Media", "Publish", "Register",
    "Resolve", "ResolveAck", "Screen", "Send",
]  # fmt: skip # the names on two lines, not one per line


@dataclass(slots=True, init=False, unsafe_hash=True)
class Publish:
    """Publish `event` on the bus, fire-and-forget (never on the call path)."""

    event: Final[Event]

    def __init__(self, event: Event) -> None:
        self.event = event


@dataclass(frozen=True, slots=True)
class Register:
    """Pass the REGISTER `data` to the registrar; answer with `Proxy.registered(server, ...)`.

    `source` is where it came from (with its connection, for streams) and
    `edge_address` the SIP URI of ours it arrived at, where other edges reach
    the phones registered through us.
    """

    server: ServerTransaction
    data: bytes
    source: Destination
    edge_address: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the answer to `query` into the directory, then `Proxy.resume(server, ...)`."""

    query: Query
    server: ServerTransaction


@dataclass(frozen=True, slots=True)
class Resolve:
    """Ask DNS for `keys` (into the cache the core reads), then `Proxy.resume(server, ...)`."""

    keys: tuple[RecordKey, ...]
    server: ServerTransaction


@dataclass(frozen=True, slots=True)
class ResolveAck:
    """Ask DNS for `keys` (into the cache the core reads), then `Proxy.ack_resolved(ticket, ...)`:
    a stateless ACK whose next hop's name the cache lacked waits for it (`parked_acks`)."""

    keys: tuple[RecordKey, ...]
    ticket: int


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """Count a failed authentication (the store, the log, maybe a block), hold the answer back
    as long as the count asks, then `Proxy.refuse(server, ...)` answers the 403."""

    server: ServerTransaction
    source: Destination
    user: str
    realm: str
    method: str


@dataclass(frozen=True, slots=True)
class Acquire:
    """Ask the shared limits (Redis) for a new call's `query`, then `Proxy.limited(server, …)`."""

    query: LimitQuery
    server: ServerTransaction


@dataclass(frozen=True, slots=True)
class Screen:
    """Ask the fraud counts (Redis) about a new call's `query`, then `Proxy.screened(server, …)`."""

    query: FraudQuery
    server: ServerTransaction


@dataclass(frozen=True, slots=True)
class Media:
    """Ask rtpengine to `command` (`offer`, `answer`, `delete`) the call `call_id`.

    `sdp` is the body to rewrite (empty for `delete`); `ticket` names what waits
    for the rewritten SDP, to be handed back with `Proxy.media_done(ticket, sdp)`
    (`None` for a failure); a `delete` has ticket 0: nothing waits for it.
    """

    command: str
    call_id: str
    from_tag: str
    to_tag: str | None
    sdp: bytes
    ticket: int


@dataclass(frozen=True, slots=True)
class HandOff:
    """A message for the worker's B2BUA engine, not the proxy (docs/b2bua.md): one of a pair's
    Call-IDs, or (with `hops`, the routing decision) a new INVITE its rule's `mode` gives it,
    or (`adopt`) an in-dialog request naming a pair's tag: its state is looked up first."""

    data: bytes
    source: Destination
    hops: tuple[Hop, ...] = ()
    adopt: bool = False


Action = (
    Send | Publish | Register | Lookup | Resolve | ResolveAck
    | AuthFailed | Acquire | Media | Screen | HandOff
)  # fmt: skip # one union on two lines, not one name per line
