"""The live transactions of one process, their timers, and message → transaction matching.

The table is the transaction layer's single entry point for the adapter:
create transactions, match incoming messages, and call `expire(now)` when
`next_deadline()` comes (the adapter owns the clock; this stays sans-IO).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Final

from shared.sip.message import Request, Response
from shared.sip.timers import TimerQueue, TimerSettings
from shared.sip.transaction.base import Transaction
from shared.sip.transaction.client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from shared.sip.transaction.events import TransactionEvent
from shared.sip.transaction.matching import (
    ServerKey,
    client_key,
    is_rfc2543,
    response_key,
    server_key,
)
from shared.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from shared.sip.transport.destination import Destination

KINDS: Final = ("invite_client", "non_invite_client", "invite_server", "non_invite_server")


class TransactionTable:
    """Client and server transactions keyed as RFC 3261 §17.1.3 / §17.2.3 match them."""

    def __init__(self, settings: TimerSettings | None = None) -> None:
        self.settings = settings or TimerSettings()
        self.timers: TimerQueue[Transaction] = TimerQueue()
        self._clients: dict[Hashable, ClientTransaction] = {}
        self._servers: dict[Hashable, ServerTransaction] = {}
        self._counts: Counter[str] = Counter(dict.fromkeys(KINDS, 0))

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def counts(self) -> dict[str, int]:
        """Live transactions per kind, for the metrics endpoint."""
        return dict(self._counts)

    # ----- creation --------------------------------------------------------------------

    def start_client(
        self, request: Request, destination: Destination, now: float, *, proxy: bool = False
    ) -> tuple[ClientTransaction, list[TransactionEvent]]:
        """Create a client transaction for `request` (with its branch already in the top Via)
        and return it with its first events (the transmission).  `proxy` arms Timer C."""
        client: ClientTransaction
        if request.method == "INVITE":
            client = InviteClientTransaction(self, request, destination, proxy=proxy)
        else:
            client = NonInviteClientTransaction(self, request, destination)
        if client.key in self._clients:
            raise ValueError(f"a client transaction with key {client.key!r} already exists")
        self._add(self._clients, client)
        return client, client.start(now)

    def create_server(self, request: Request, destination: Destination) -> ServerTransaction:
        """A server transaction for a new request (one `match_request` did not find).

        `destination` is where responses go (`response_destination`).  ACK never
        creates one: an ACK that matches nothing is for a 2xx and the TU's.
        """
        if request.method == "ACK":
            raise ValueError("ACK does not create a server transaction")
        key = server_key(request)
        if key in self._servers:
            raise ValueError(f"a server transaction with key {key!r} already exists")
        server: ServerTransaction
        if request.method == "INVITE":
            server = InviteServerTransaction(self, key, request, destination)
        else:
            server = NonInviteServerTransaction(self, key, request, destination)
        self._add(self._servers, server)
        return server

    # ----- matching --------------------------------------------------------------------

    def has_client(self, branch: str, method: str) -> bool:
        """Whether a client transaction of `method` with `branch` exists (a branch not new)."""
        return client_key(branch, method) in self._clients

    def match_response(self, response: Response) -> ClientTransaction | None:
        """The client transaction a response belongs to (§17.1.3), if any.

        Raises `SipParseError` when the response's Via or CSeq is malformed.
        """
        key = response_key(response)
        return None if key is None else self._clients.get(key)

    def match_request(self, request: Request) -> ServerTransaction | None:
        """The server transaction a retransmission or non-2xx ACK belongs to (§17.2.3), if any.

        Raises `SipParseError` when a header the match needs is malformed.
        """
        return self._lookup_server(request, server_key(request))

    def match_cancel(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (§9.2), if it is still here."""
        found = self._lookup_server(cancel, server_key(cancel, "INVITE"))
        return found if isinstance(found, InviteServerTransaction) else None

    def _lookup_server(self, request: Request, key: ServerKey) -> ServerTransaction | None:
        server = self._servers.get(key)
        if server is None or not is_rfc2543(key):
            return server
        # RFC 2543 keys leave the To tag out; CANCEL compares against its INVITE's tag.
        return server if server.matches_to_tag(request) else None

    # ----- time ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def expire(self, now: float) -> list[tuple[Transaction, TransactionEvent]]:
        """Fire every timer due at `now`; the events say what to send and tell the TU."""
        events: list[tuple[Transaction, TransactionEvent]] = []
        for timer, transaction in self.timers.pop_due(now):
            events.extend((transaction, event) for event in transaction.on_timer(timer, now))
        return events

    # ----- bookkeeping -----------------------------------------------------------------

    def discard(self, transaction: Transaction) -> None:
        """Forget a terminated transaction (called by the transaction itself)."""
        table: dict[Hashable, ClientTransaction] | dict[Hashable, ServerTransaction]
        table = self._servers if isinstance(transaction, ServerTransaction) else self._clients
        if table.get(transaction.key) is transaction:
            del table[transaction.key]
            self._counts[transaction.kind] -= 1

    def _add(
        self,
        table: dict[Hashable, ClientTransaction] | dict[Hashable, ServerTransaction],
        transaction: ClientTransaction | ServerTransaction,
    ) -> None:
        table[transaction.key] = transaction  # type: ignore[assignment]
        self._counts[transaction.kind] += 1
