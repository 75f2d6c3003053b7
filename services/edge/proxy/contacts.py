"""The Contact a far end reaches a phone behind NAT by: the edge's own URI naming the phone's flow.

A phone behind NAT writes a Contact nobody outside its network can reach
(`sip:alice@192.168.1.10`).  A far end that follows the Record-Route never
needs it, but many send their BYE or re-INVITE to the Contact itself (or
drop the route set after a failover).  OpenSIPS' `fix_nated_contact` puts
the address the request came from in the Contact; that reaches a UDP phone
from anywhere only while its router keeps a mapping open to everyone, and a
phone on a TCP connection not at all.  So the edge writes its own address,
with what its Record-Route carries for the phone, in the manner of RFC 5626's
flow tokens:

    Contact: <sip:alice@EDGE:PORT;cm-flow=FLOW;cm-ct=ORIGINAL;cm-media;cm-rr=TOKEN>

`cm-flow` is the phone's flow token (`flows`), `cm-ct` the phone's own
Contact URI (base64url, so any URI fits a parameter), `cm-media` (only for a
dialog whose media rtpengine relays, as in the Record-Route: a BYE sent here
deletes the session) and `cm-rr` an HMAC of them with the dialog's Call-ID
(`dialogs.DialogGate.contact_params`).  A
request addressed to it, with or without a Route, goes down the flow with the
phone's own Contact back as its Request-URI.  Nothing is stored, so every edge
holding the keys takes it (a restarted one too); the token binds the flow to
one Call-ID, so a Contact captured from one call reaches nobody in another,
and a changed flow or target breaks the signature: no open relay.

Written on the requests of a phone on a flow (a new dialog's, and an
in-dialog target refresh) that come from the phone itself (one Via), and on
the 18x/2xx a phone reached down a flow answers with, for the methods whose
Contact sets the remote target.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from services.edge import metrics
from services.edge.proxy.dialogs import DialogGate
from services.edge.proxy.interfaces import Interface, uri_host
from shared.sip.address import Address
from shared.sip.errors import SipError
from shared.sip.message import Message, Request
from shared.sip.params import format_params
from shared.sip.uri import SipUri

TARGET_METHODS: Final = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
"""Methods whose Contact (request's, and 18x/2xx's) is the dialog's remote target."""


def rewrite_contacts(
    message: Message, interface: Interface, flow: str, dialogs: DialogGate, media: bool = False
) -> None:
    """Every Contact of `message` (from the phone on `flow`) becomes one of ours on `interface`;
    `media`: the dialog is relayed, and the Contact carries the signed `cm-media` mark."""
    if not message.has_header("contact") or message.contact_is_wildcard:
        return
    call_id = message.call_id
    contacts = [
        _ours(address, interface, flow, call_id, dialogs, media=media)
        for address in message.contacts
    ]
    message.set_header("Contact", ", ".join(contacts))
    metrics.NAT_CONTACTS.value += len(contacts)


def phones_contact(request: Request) -> bool:
    """Whether `request` (before our Via), from a flow, names a target the far end must reach by
    that flow: its method sets the remote target, and its sender is the user agent whose Contact
    it is (one Via: behind a proxy, the Contact is the proxy's business, as in `nat`)."""
    return request.method in TARGET_METHODS and len(request.headers("via")) == 1


def target_of(encoded: str) -> str:
    """The phone's own Contact URI from a `cm-ct` value (signed: garbled only by our own bug)."""
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SipError("Forbidden (bad contact)", 403) from None


def _ours(
    address: Address,
    interface: Interface,
    flow: str,
    call_id: str,
    gate: DialogGate,
    *,
    media: bool,
) -> str:
    uri = address.uri
    target = base64.urlsafe_b64encode(str(uri).encode()).rstrip(b"=").decode()
    user = uri.user if isinstance(uri, SipUri) else None
    transport = () if interface.transport == "udp" else (("transport", interface.transport),)
    ours = SipUri(uri_host(interface.host), user, None, interface.port, transport)
    params = gate.contact_params(call_id, flow, target, media)
    return f"<{ours}{params}>{format_params(address.params)}"
