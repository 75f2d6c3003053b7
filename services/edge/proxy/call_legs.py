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

Built once per answered call, never on the forwarding of other messages, and
built as the events are (`shared.contracts.unvalidated`: from messages already parsed).
"""

from __future__ import annotations

from services.edge.proxy.call_events import host_port
from services.edge.proxy.contacts import target_of
from shared.contracts.calls import DialogLeg
from shared.contracts.unvalidated import unvalidated
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination


def caller_leg(invite: Request, source: Destination, answer: Response) -> DialogLeg:
    """The caller of `invite` (as received from `source`), answered by `answer`."""
    return unvalidated(
        DialogLeg,
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
    return unvalidated(
        DialogLeg,
        call_id=sent.call_id,
        target=_contact(answer),
        from_header=sent.header("from") or "",
        to_header=answer.header("to") or "",
        routes=tuple(reversed(beyond)),
        address=host_port(destination),
        transport=destination.transport,
    )


def _contact(message: Request | Response) -> str:
    """The message's first Contact URI, read from the header's text (no address parsed: this
    runs for every answered call); the phone's own when the edge made it one of its own for
    NAT (``cm-ct``).  Empty when there is none (the BYE then goes to the next hop's URI)."""
    raw = message.header("contact")
    if not raw:
        return ""
    opening = raw.find("<")
    if opening >= 0:
        closing = raw.find(">", opening)
        uri = raw[opening + 1 : closing] if closing > opening else ""
    else:
        uri = raw.split(";", 1)[0].strip()
    marked = uri.find(";cm-ct=")
    if marked >= 0:
        value = uri[marked + len(";cm-ct=") :].split(";", 1)[0]
        try:
            return target_of(value)
        except SipError:
            return ""
    return uri
