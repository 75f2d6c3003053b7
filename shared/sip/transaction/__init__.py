"""The SIP transaction layer (RFC 3261 §17, RFC 6026), sans-IO.

Start at `TransactionTable`: it creates and matches transactions and fires
their timers for a `now` the caller supplies.  Each call returns events
(`Send`, `ResponseReceived`, `AckReceived`, `TimedOut`, `TransportFailed`,
`Terminated`) for the caller to act on.
"""

from shared.sip.transaction.client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
    ack_for,
    cancel_for,
)
from shared.sip.transaction.events import (
    AckReceived,
    ResponseReceived,
    Send,
    State,
    Terminated,
    TimedOut,
    TimerName,
    TransactionEvent,
    TransportFailed,
)
from shared.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from shared.sip.transaction.table import TransactionTable

__all__ = [
    "AckReceived",
    "ClientTransaction",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ResponseReceived",
    "Send",
    "ServerTransaction",
    "State",
    "Terminated",
    "TimedOut",
    "TimerName",
    "TransactionEvent",
    "TransactionTable",
    "TransportFailed",
    "ack_for",
    "cancel_for",
]
