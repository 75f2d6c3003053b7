"""Flow tokens: a Route/Record-Route parameter naming the connection a phone is reached by.

In the manner of RFC 5626 §5.2: a phone behind NAT (its Contact is not where
its REGISTER came from) or on a TCP connection can only be reached through
the edge that received its REGISTER, by the address it came from or over
that very connection.  Another edge sends such a call to that edge with
``Route: <sip:edge;lr;cm-flow=TOKEN>``; the edge puts the same token in its
Record-Route so in-dialog requests find the flow again.  The token carries
the flow (transport, address, connection id) and an HMAC with the
deployment's shared secret, so a peer cannot forge one to reach anyone.

A caller behind NAT (or on a TCP connection) is reached the same way: the
edge that received its INVITE records the caller's flow too, so the far
end's BYE or re-INVITE finds it.  A dialog between two such phones carries
both flows in one parameter, `cm-flow=CALLEE~CALLER`; an in-dialog request
goes down the first flow it did not come from.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

from shared.keyed_hmac import KeyedHmac
from shared.sip.transport.destination import Destination

FLOW_PARAM: Final = "cm-flow"
CONTACT_PARAM: Final = "cm-ct"
"""In a Contact of ours (`contacts`): the phone's own Contact URI, restored as Request-URI."""
FLOW_SEPARATOR: Final = "~"
"""Between the flows of one dialog (unreserved in a URI, never in a token)."""
_MAC_LENGTH: Final = 16


class FlowTokens:
    def __init__(self, secret: bytes) -> None:
        self._keyed = KeyedHmac(secret)

    def mint(self, flow: Destination) -> str:
        connection = "" if flow.connection_id is None else str(flow.connection_id)
        payload = f"{flow.transport} {flow.host} {flow.port} {connection}".encode()
        encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        return f"{encoded}.{self._mac(encoded)}"

    def open(self, token: str) -> Destination | None:
        """The flow named by `token`, or None when it is not one of ours (forged, garbled)."""
        encoded, _, mac = token.partition(".")
        if not (encoded.isascii() and mac.isascii()):  # never minted; they raised below
            return None
        if not hmac.compare_digest(self._mac(encoded), mac):
            return None
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            transport, host, port, connection = payload.split(" ")
            return Destination(transport, host, int(port), int(connection) if connection else None)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None

    def _mac(self, encoded: str) -> str:
        return self._keyed.digest(encoded.encode())[:_MAC_LENGTH].hex()


def is_from_flow(flow: Destination, source: Destination) -> bool:
    """Whether a request came from the flow itself (then it goes the other way).

    A connection id counts on its own transport only: each transport (TCP, TLS, WS,
    WSS) numbers its connections from 1, so another edge's TCP connection may carry
    the id of a phone's WebSocket."""
    if (
        flow.connection_id is not None
        and flow.connection_id == source.connection_id
        and flow.transport == source.transport
    ):
        return True
    return (flow.transport, flow.host, flow.port) == (source.transport, source.host, source.port)


def join_flows(*tokens: str | None) -> str | None:
    """The `cm-flow` value naming the flows of a dialog (callee's first), or None for none."""
    present = [token for token in tokens if token is not None]
    return FLOW_SEPARATOR.join(present) if present else None
