"""What a transaction tells its caller: states, timer names and output events.

Events are plain slotted dataclasses rather than pydantic models: they never
leave the process and one is made per message on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination

if TYPE_CHECKING:
    from shared.sip.transaction.client import ClientTransaction


class State(StrEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class TimerName:
    """RFC 3261 Table 4 timers, plus L and M from RFC 6026 §8.4.

    Plain strings, not an enum: a transaction's dict of armed timers then holds only strings
    and numbers, which CPython's cyclic collector does not track, and a finished transaction
    waits up to 32 s in that dict (an enum member as a key made every such dict tracked).
    """

    A: Final = "A"
    B: Final = "B"
    C: Final = "C"
    D: Final = "D"
    E: Final = "E"
    F: Final = "F"
    G: Final = "G"
    H: Final = "H"
    I: Final = "I"  # noqa: E741 - the RFC's name
    J: Final = "J"
    K: Final = "K"
    L: Final = "L"
    M: Final = "M"


@dataclass(slots=True, init=False, unsafe_hash=True)
class Send:
    """Send `data` to `destination` (a request, a retransmission, an ACK or a response).

    The one outbound type from the transaction to the wire: a proxy passes it
    on as its action unchanged.  `client`, set by a client transaction, is
    who hears of a failure to send (§17.1.4); it is not part of the value.
    """

    data: Final[bytes]
    destination: Final[Destination]
    client: ClientTransaction | None = field(compare=False)

    def __init__(
        self, data: bytes, destination: Destination, client: ClientTransaction | None = None
    ) -> None:
        self.data = data
        self.destination = destination
        self.client = client


@dataclass(slots=True, init=False, unsafe_hash=True)
class ResponseReceived:
    """A response for the TU; retransmissions the transaction absorbs never appear."""

    response: Final[Response]

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that matched an INVITE server transaction after a 2xx (RFC 6026 Accepted state)."""

    request: Request


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No answer in time.

    Client B, F, and C before any provisional: `response` is a locally made 408
    the TU treats like a received one (RFC 3261 §16.7 step 2, §16.8).  C after a
    provisional: `response` is None and a proxy now sends CANCEL (§16.8).
    Server H: the ACK never came; `response` is None.
    """

    timer: str
    """Its `TimerName`."""
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported a failure for this transaction (RFC 3261 §17.1.4, §17.2.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is gone from its table; it will emit nothing more."""


TransactionEvent = Send | ResponseReceived | AckReceived | TimedOut | TransportFailed | Terminated

TERMINATED = Terminated()
TRANSPORT_FAILED = TransportFailed()
