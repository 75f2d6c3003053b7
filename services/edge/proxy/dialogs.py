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
from services.edge.proxy.flows import FLOW_PARAM
from services.edge.topology.tokens import Keyring, TopologyKey
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri

log = logging.getLogger("callmesh.edge")

DIALOG_PARAM: Final = "cm-rr"
_MAC_BYTES: Final = 12
_LABEL: Final = b"callmesh record-route"

Owner = Callable[[str, int | None, str], bool]
"""(host, port, transport) → whether that address is the edge's (`Interfaces.is_ours`)."""
Trusted = Callable[[Destination], bool]


class RecordRouteSigner:
    """Makes and checks `cm-rr` tokens: `<key id>.<HMAC-SHA256, first 12 bytes in hex>`.

    The keys are a `Keyring`'s (current signs, previous still verifies: rotation),
    each turned into an HMAC key of its own so no other use of the secret meets it.
    """

    __slots__ = ("_current", "_keys")

    def __init__(self, keyring: Keyring) -> None:
        keys = [key for key in (keyring.current, keyring.previous) if key is not None]
        self._keys = {str(key.key_id): hmac.digest(key.secret, _LABEL, "sha256") for key in keys}
        """By the key id as a token writes it, so checking one needs no number parsed."""
        self._current = str(keyring.current.key_id)

    @classmethod
    def ephemeral(cls) -> RecordRouteSigner:
        """A key of this process alone: tokens die with it (tests, a core without settings)."""
        return cls(Keyring(TopologyKey(0, os.urandom(32))))

    def sign(self, call_id: str, flow: str | None) -> str:
        return f"{self._current}.{self._mac(self._keys[self._current], call_id, flow)}"

    def verify(self, token: str, call_id: str, flow: str | None) -> bool:
        key_id, _, mac = token.partition(".")
        key = self._keys.get(key_id)
        return key is not None and hmac.compare_digest(self._mac(key, call_id, flow), mac)

    @staticmethod
    def _mac(key: bytes, call_id: str, flow: str | None) -> str:
        text = call_id if flow is None else f"{call_id}\n{flow}"
        return hmac.digest(key, text.encode(), "sha256")[:_MAC_BYTES].hex()


@dataclass(frozen=True, slots=True)
class OwnRoute:
    """The edge's own entries at the top of a request's route set, read before they are popped.

    `strict`: the Request-URI is our Record-Route (a strict router put it there)
    and counts as the first entry; `count`: the Route entries of ours after it;
    `flow`, `token`: the parameters of the lowest entry carrying either;
    `beyond`: Route entries of someone else follow ours.
    """

    strict: bool = False
    count: int = 0
    flow: str | None = None
    token: str | None = None
    beyond: bool = False

    @property
    def ours(self) -> bool:
        return self.strict or self.count > 0


NO_ROUTE: Final = OwnRoute()


def own_route(request: Request, is_ours: Owner) -> OwnRoute:
    """Read (do not pop) the entries of ours that loose routing will pop (§16.4)."""
    routes = request.routes
    if not routes:
        return NO_ROUTE
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
    flow = token = None
    for entry in entries:
        entry_flow, entry_token = entry.param(FLOW_PARAM), entry.param(DIALOG_PARAM)
        if entry_flow or entry_token:
            flow, token = entry_flow or None, entry_token or None
    return OwnRoute(strict, count, flow, token, count < len(routes))


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

    def route_params(self, call_id: str, flow: str | None) -> str:
        """What the edge's Record-Route of the dialog of `call_id` carries, `;cm-flow=F;cm-rr=T`
        (signed once, however many entries the edge writes)."""
        token = self.signer.sign(call_id, flow)
        if flow is None:
            return f";{DIALOG_PARAM}={token}"
        return f";{FLOW_PARAM}={flow};{DIALOG_PARAM}={token}"

    def refusal(self, request: Request, own: OwnRoute, source: Destination) -> SipError | None:
        """None: route it on; else why not (counted and logged here; the caller answers it
        statelessly, or drops an ACK)."""
        if request.method == "CANCEL":
            return None  # never follows its route: it meets its INVITE's transaction, or 481
        in_dialog = request.to_tag is not None
        if in_dialog:
            token = own.token
            if token is not None and self.signer.verify(token, request.call_id, own.flow):
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
            and not (own.token and self.signer.verify(own.token, request.call_id, own.flow))
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
    return is_ours(uri.host, uri.port, (uri.param("transport") or "udp").lower())
