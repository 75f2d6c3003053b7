"""What the proxy core asks its adapter to do: send bytes, publish an event."""

from __future__ import annotations

from dataclasses import dataclass

from shared.bus import Event
from shared.sip.transaction import ClientTransaction
from shared.sip.transport.destination import Destination


@dataclass(frozen=True, slots=True)
class Send:
    """Send `data` to `destination`; a failure is reported back for `client`, if set."""

    data: bytes
    destination: Destination
    client: ClientTransaction | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish `event` on the bus, fire-and-forget (never on the call path)."""

    event: Event


Action = Send | Publish
