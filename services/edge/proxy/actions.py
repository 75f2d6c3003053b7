"""What the proxy core asks its adapter to do: send bytes, publish an event, ask and answer.

`Send` is the transaction layer's own: what a transaction sends leaves as it
came, unwrapped.  `Register`, `Lookup` and `AuthFailed` are round trips: the
adapter runs them off the call path and feeds the outcome back
(`Proxy.registered`, `Proxy.resume`); the core holds the request's server
transaction meanwhile, so retransmissions are absorbed (and, once answered,
answered again with the same response).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.edge.location import Query
from shared.contracts.event import Event
from shared.sip.transaction import Send, ServerTransaction
from shared.sip.transport.destination import Destination

__all__ = ["Action", "AuthFailed", "Lookup", "Publish", "Register", "Send"]


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish `event` on the bus, fire-and-forget (never on the call path)."""

    event: Event


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
class AuthFailed:
    """Count a failed authentication (the store, the log, maybe a block), hold the answer back
    as long as the count asks, then `Proxy.refuse(server, ...)` answers the 403."""

    server: ServerTransaction
    source: Destination
    user: str
    realm: str
    method: str


Action = Send | Publish | Register | Lookup | AuthFailed
