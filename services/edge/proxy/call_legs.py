"""Each party of an answered call, as the `edge.call.answered` event carries it (`DialogLeg`).

Why: the edge keeps no dialog state, yet the API may have to end a proxied
call (`POST /v1/calls/{id}:hangup`).  The messages at hand when the 2xx is
relayed hold everything a BYE to each side needs, so the answered event takes
it along and the accounting service keeps it while the call is open:

- the caller: its Contact and the INVITE's Record-Routes as received (the
  proxies between it and the edge), reached where its INVITE came from (its
  flow, behind NAT);
- the callee: the INVITE as it left (its Call-ID, masked or not, From and To),
  the 2xx's Contact (the phone's own one when the edge rewrote it for NAT:
  `cm-ct`), and the 2xx's Record-Routes above the ones the INVITE left with (the
  proxies beyond the edge), reached where the INVITE went.

Built once per answered call, never on the forwarding of other messages.
"""

from __future__ import annotations

from services.edge.proxy.call_events import host_port
from services.edge.proxy.contacts import target_of
from shared.contracts.calls import DialogLeg
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri


def caller_leg(invite: Request, source: Destination, answer: Response) -> DialogLeg:
    """The caller of `invite` (as received from `source`), answered by `answer`."""
    return DialogLeg(
        call_id=invite.call_id,
        target=_contact(invite),
        from_header=answer.header("to") or "",
        to_header=invite.header("from") or "",
        routes=tuple(invite.headers("record-route")),
        address=host_port(source),
        transport=source.transport,
    )


def callee_leg(sent: Request, destination: Destination, answer: Response) -> DialogLeg:
    """The callee that answered `sent` (the INVITE as it left for `destination`) with `answer`."""
    answered = answer.headers("record-route")
    beyond = answered[: max(0, len(answered) - len(sent.headers("record-route")))]
    return DialogLeg(
        call_id=sent.call_id,
        target=_contact(answer),
        from_header=sent.header("from") or "",
        to_header=answer.header("to") or "",
        routes=tuple(reversed(beyond)),
        address=host_port(destination),
        transport=destination.transport,
    )


def _contact(message: Request | Response) -> str:
    """The message's first Contact URI; the phone's own when the edge made it one of its own
    for NAT (``cm-ct``).  Empty when there is none (the BYE then goes to the next hop's URI)."""
    try:
        contacts = message.contacts
    except SipError:
        return ""
    if not contacts:
        return ""
    uri = contacts[0].uri
    original = uri.param("cm-ct") if isinstance(uri, SipUri) else None
    if original:
        try:
            return target_of(original)
        except SipError:
            return ""
    return str(uri)
