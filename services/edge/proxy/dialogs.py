"""In-dialog requests follow only a route set the edge itself put there (no open relay).

A request with a To tag claims to belong to a dialog.  The edge keeps no
dialog memory, so without a check it would send such a request wherever its
Request-URI or Route points: free calls through a carrier gateway, and an
amplifier (each relayed request retransmitted).  The rule is the one of
OpenSIPS' and Kamailio's reference scripts (`has_totag()`: `loose_route()`
or 404), made checkable without state: every Record-Route the edge writes
carries `cm-rr`, a truncated HMAC of the dialog's Call-ID (and of the flow
token beside it, if any) under the deployment's record-route key.  An
in-dialog request is relayed when one of the edge's own entries at the top
of its route set carries a token that verifies for its Call-ID: one HMAC
per in-dialog request, nothing remembered.  Every edge holding the key (all
edges of a deployment, the same edge after a restart) verifies the others'
tokens, so calls outlive restarts; a Record-Route captured from one call
does not verify in another.

The Contact the edge writes for a phone behind NAT (`contacts`) is the
same kind of entry, reached as a Request-URI rather than a Route: the edge's
address with the phone's flow, its original Contact URI (`cm-ct`) and a
token signing both with the Call-ID.  A far end that ignores the route set
and sends to the Contact is let through on that token alone.

Trusted sources (`CALLMESH_TRUSTED_NETWORKS`, the routing table's gateways)
keep RFC 3261 §16 loose routing, token or not.  Anyone else's in-dialog
request without a valid token is answered statelessly (404 without any
Route of ours, 403 with one whose token is missing or wrong) or, an ACK,
dropped; so is an ACK without a To tag that matched no transaction, and an
out-of-dialog request from an untrusted source whose preloaded Route leads
past the edge, or names a flow of ours without a token for its Call-ID
(403): an edge handing a call to another edge's flow signs that Route as
its Record-Route.  Nothing goes onward, nothing is resolved; one info
line and `callmesh_edge_relay_refused{reason}` record it.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from services.edge import metrics
from services.edge.proxy.flows import CONTACT_PARAM, FLOW_PARAM
from services.edge.topology.tokens import Keyring, TopologyKey
from shared.keyed_hmac import KeyedHmac
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination, transport_of
from shared.sip.uri import SipUri

log = logging.getLogger("callmesh.edge")

DIALOG_PARAM: Final = "cm-rr"
MEDIA_PARAM: Final = "cm-media"
"""On a relayed call's Record-Route (covered by `cm-rr`): any edge, after a restart too, does
the rtpengine work of its re-INVITEs and BYE without remembering the call."""
LATE: Final = "late"
"""`cm-media=late`: the call began with a late offer (an INVITE without SDP), so the SDP of its
2xx (a retransmission with no transaction too) is the callee's offer, and a PRACK's the answer."""
_MAC_BYTES: Final = 12
_LABEL: Final = b"callmesh record-route"

Owner = Callable[[str, int | None, str], bool]
"""(host, port, transport) → whether that address is the edge's (`Interfaces.is_ours`)."""
Trusted = Callable[[Destination], bool]


class RecordRouteSigner:
    """Makes and checks `cm-rr` tokens: `<key id>.<HMAC-SHA256, first 12 bytes in hex>`.

    The keys are a `Keyring`'s (current signs, previous still verifies: rotation),
    each turned into an HMAC key of its own so no other use of the secret meets it.
    Each HMAC is keyed once (`KeyedHmac`): three tokens are made or checked per call.
    """

    __slots__ = ("_current", "_keys")

    def __init__(self, keyring: Keyring) -> None:
        keys = [key for key in (keyring.current, keyring.previous) if key is not None]
        self._keys = {
            str(key.key_id): KeyedHmac(hmac.digest(key.secret, _LABEL, "sha256")) for key in keys
        }
        """By the key id as a token writes it, so checking one needs no number parsed."""
        self._current = str(keyring.current.key_id)

    @classmethod
    def ephemeral(cls) -> RecordRouteSigner:
        """A key of this process alone: tokens die with it (tests, a core without settings)."""
        return cls(Keyring(TopologyKey(0, os.urandom(32))))

    def sign(self, call_id: str, flow: str | None) -> str:
        return f"{self._current}.{self._mac(self._keys[self._current], call_id, flow)}"

    def verify(self, token: str, call_id: str, flow: str | None) -> bool:
        """Whether `token` signs `call_id` and `flow`: False for any text no signer writes (a
        token beyond ASCII once %-unescaped, which `hmac.compare_digest` refuses to compare;
        a flow holding a byte no UTF-8 holds), which raised out of here, so such a request
        was dropped as a handler's bug instead of answered 403."""
        key_id, _, mac = token.partition(".")
        key = self._keys.get(key_id)
        if key is None or not mac.isascii():
            return False
        try:
            expected = self._mac(key, call_id, flow)
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(expected, mac)

    @staticmethod
    def _mac(keyed: KeyedHmac, call_id: str, flow: str | None) -> str:
        text = call_id if flow is None else f"{call_id}\n{flow}"
        return keyed.digest(text.encode())[:_MAC_BYTES].hex()


@dataclass(frozen=True, slots=True)
class OwnContact:
    """A Request-URI that is a Contact the edge wrote for a phone (`contacts`), as written."""

    flow: str
    target: str
    """The phone's own Contact URI, encoded (`cm-ct`)."""
    token: str
    media: bool = False
    """`cm-media`: the dialog's media is relayed (its BYE here deletes the session)."""

    @property
    def signed(self) -> str:
        """What its token signs beside the Call-ID (the media mark as in `route_signed`)."""
        signed = f"{self.flow}\n{self.target}"
        return f"{signed}\n*{MEDIA_PARAM}" if self.media else signed


@dataclass(slots=True, init=False, unsafe_hash=True)
class OwnRoute:
    """The edge's own entries at the top of a request's route set, read before they are popped.

    `strict`: the Request-URI is our Record-Route (a strict router put it there)
    and counts as the first entry; `count`: the Route entries of ours after it;
    `flow`, `token`, `media`: the parameters of the lowest entry carrying either of the
    first two; `beyond`: Route entries of someone else follow ours; `contact`: the
    Request-URI is a Contact of ours (with no Route of ours, its flow and token are the
    ones read).
    """

    strict: Final[bool]
    count: Final[int]
    flow: Final[str | None]
    token: Final[str | None]
    beyond: Final[bool]
    contact: Final[OwnContact | None]
    media: Final[bool]
    late: Final[bool]

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        strict: bool = False,
        count: int = 0,
        flow: str | None = None,
        token: str | None = None,
        beyond: bool = False,
        contact: OwnContact | None = None,
        media: bool = False,
        late: bool = False,
    ) -> None:
        self.strict = strict
        self.count = count
        self.flow = flow
        self.token = token
        self.beyond = beyond
        self.contact = contact
        self.media = media
        self.late = late

    @property
    def ours(self) -> bool:
        return self.strict or self.count > 0 or self.contact is not None

    @property
    def signed(self) -> str | None:
        """What `token` signs beside the Call-ID: the flow, with the target for a bare Contact."""
        if self.contact is not None and not (self.strict or self.count):
            return self.contact.signed
        return route_signed(self.flow, self.media, self.late)


def route_signed(flow: str | None, media: bool, late: bool = False) -> str | None:
    """What a Record-Route's token signs beside the Call-ID: its flow, and the media mark
    (after `*`, in no flow token or Contact target: no other token's text can be it; a
    Record-Route without the mark signs what it always did)."""
    if not media:
        return flow
    return f"{flow or ''}\n*{_media_marks(late)[1:]}"


def _media_marks(late: bool) -> str:
    return f";{MEDIA_PARAM}={LATE}" if late else f";{MEDIA_PARAM}"


NO_ROUTE: Final = OwnRoute()


def own_route(request: Request, is_ours: Owner) -> OwnRoute:
    """Read (do not pop) the entries of ours that loose routing will pop (§16.4)."""
    contact = own_contact(request, is_ours)
    routes = request.routes
    if not routes:
        if contact is None:
            return NO_ROUTE
        return OwnRoute(
            flow=contact.flow, token=contact.token, contact=contact, media=contact.media
        )
    entries: list[SipUri] = []
    uri = request.uri
    strict = False
    if isinstance(uri, SipUri) and uri.has_param("lr") and _is(uri, is_ours):
        strict = True
        entries.append(uri)
        routes = routes[:-1]  # the last Route is the real Request-URI
    count = 0
    for address in routes:
        route = address.uri
        if not (isinstance(route, SipUri) and _is(route, is_ours)):
            break
        entries.append(route)
        count += 1
    flow = token = mark = None
    for entry in entries:
        entry_flow, entry_token = entry.param(FLOW_PARAM), entry.param(DIALOG_PARAM)
        if entry_flow or entry_token:
            flow, token = entry_flow or None, entry_token or None
            mark = entry.param(MEDIA_PARAM)
    beyond = count < len(routes)
    return OwnRoute(strict, count, flow, token, beyond, contact, mark is not None, mark == LATE)


def own_contact(request: Request, is_ours: Owner) -> OwnContact | None:
    """The Request-URI as a Contact of ours (`contacts`), or None when it is not one."""
    if f";{CONTACT_PARAM}=" not in request.uri_text:
        return None
    uri = request.uri
    if not (isinstance(uri, SipUri) and _is(uri, is_ours)):
        return None
    flow, target, token = uri.param(FLOW_PARAM), uri.param(CONTACT_PARAM), uri.param(DIALOG_PARAM)
    if not (flow and target and token):
        return None
    return OwnContact(flow, target, token, uri.has_param(MEDIA_PARAM))


class DialogGate:
    """Signs the edge's Record-Route; decides which requests may follow their route set."""

    __slots__ = ("signer", "trusted")

    def __init__(self, signer: RecordRouteSigner, trusted: Trusted) -> None:
        self.signer = signer
        self.trusted = trusted

    @classmethod
    def closed(cls) -> DialogGate:
        """Trusts nobody, with a key of this process: the core's default."""
        return cls(RecordRouteSigner.ephemeral(), lambda _source: False)

    def route_params(
        self, call_id: str, flow: str | None, media: bool = False, late: bool = False
    ) -> str:
        """What the edge's Record-Route of the dialog of `call_id` carries,
        `;cm-flow=F;cm-media;cm-rr=T` (signed once, however many entries the edge writes);
        `late`: `cm-media=late`, a call relayed from a late offer."""
        token = self.signer.sign(call_id, route_signed(flow, media, late))
        marks = _media_marks(late) if media else ""
        if flow is None:
            return f"{marks};{DIALOG_PARAM}={token}"
        return f";{FLOW_PARAM}={flow}{marks};{DIALOG_PARAM}={token}"

    def contact_params(self, call_id: str, flow: str, target: str, media: bool = False) -> str:
        """What a Contact of ours for the phone on `flow` carries: `;cm-flow=F;cm-ct=C;cm-rr=T`,
        `target` (C) being its own Contact URI, encoded; `;cm-media` before the token when the
        dialog is relayed, signed as in the Record-Route."""
        token = self.signer.sign(call_id, OwnContact(flow, target, "", media).signed)
        marks = f";{MEDIA_PARAM}" if media else ""
        return f";{FLOW_PARAM}={flow};{CONTACT_PARAM}={target}{marks};{DIALOG_PARAM}={token}"

    def relayed_before(self, request: Request) -> bool:
        """Whether an edge of the deployment relays this new call already: a Record-Route entry
        whose `cm-media` mark its token signs for the Call-ID.  The mark alone is anyone's to
        write: a caller's own `Record-Route: <sip:x;lr;cm-media>` kept its media unrelayed
        whatever the policy said."""
        if not any(MEDIA_PARAM in entry for entry in request.headers("record-route")):
            return False
        return self.media_mark(request) is not None

    def media_mark(self, message: Request | Response) -> str | None:
        """The `cm-media` mark of a Record-Route entry whose token signs it for the Call-ID
        ("" for `cm-media`, `late`), None without one: a relayed call's 2xx with no
        transaction left says so in the Record-Route it carries (`relay`)."""
        call_id = message.call_id
        for address in message.record_routes:
            uri = address.uri
            if not isinstance(uri, SipUri) or (mark := uri.param(MEDIA_PARAM)) is None:
                continue
            token, flow = uri.param(DIALOG_PARAM), uri.param(FLOW_PARAM) or None
            if token and self.signer.verify(token, call_id, route_signed(flow, True, mark == LATE)):
                return mark
        return None

    def media_signed(self, request: Request, own: OwnRoute) -> bool:
        """Whether `own`'s `cm-media` mark is signed for the request's dialog (a trusted
        source's in-dialog request passes `refusal` unsigned: its mark is not taken on trust)."""
        token = own.token
        return token is not None and self.signer.verify(token, request.call_id, own.signed)

    def contact_valid(self, contact: OwnContact, call_id: str) -> bool:
        return self.signer.verify(contact.token, call_id, contact.signed)

    def refusal(self, request: Request, own: OwnRoute, source: Destination) -> SipError | None:
        """None: route it on; else why not (counted and logged here; the caller answers it
        statelessly, or drops an ACK)."""
        if request.method == "CANCEL":
            return None  # never follows its route: it meets its INVITE's transaction, or 481
        in_dialog = request.to_tag is not None
        if in_dialog:
            token = own.token
            if token is not None and self.signer.verify(token, request.call_id, own.signed):
                return None
            if self.trusted(source):
                return None  # §16 loose routing for trusted peers
            if not own.ours:
                return _refuse(request, source, "no_route", 404, "no dialog here")
            return _refuse(request, source, "bad_token", 403, "not our dialog route")
        if request.method == "ACK":
            return _refuse(request, source, "no_to_tag", 400, "ACK without a dialog")
        if (
            own.flow is not None
            and not (own.token and self.signer.verify(own.token, request.call_id, own.signed))
            and not self.trusted(source)
        ):  # a flow token copied from one call's Record-Route: not a way to a phone
            return _refuse(request, source, "bad_token", 403, "not our dialog route")
        if own.beyond and not self.trusted(source):
            return _refuse(request, source, "preloaded_route", 403, "preloaded Route")
        return None


def _refuse(request: Request, source: Destination, reason: str, status: int, text: str) -> SipError:
    metrics.RELAY_REFUSED[reason] += 1
    log.info(
        "refused to relay %s from %s:%d (%s): %s",
        request.method,
        source.host,
        source.port,
        reason,
        text,
    )
    return SipError(text, status)


def _is(uri: SipUri, is_ours: Owner) -> bool:
    return is_ours(uri.host, uri.port, transport_of(uri))
