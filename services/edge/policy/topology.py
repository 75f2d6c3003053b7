"""Where topology hiding meets the proxy: which messages to hide or restore, with which options.

The proxy calls one method per point of its forwarding path (see
`services.edge.topology.hiding` for what each transformation does):

- a response from a branch, before matching it: `restore_from_outside`;
- a request outside any transaction, before routing: `inbound` (restores
  it if it comes from the outside, finds the dialog's options);
- a branch's request, its Via and Record-Route added: `outgoing`;
- a response relayed upstream, its Via popped: `upstream`.

Nothing is remembered between messages: the options of a dialog travel in
the markers of `services.edge.topology.markers`, the inside's addresses in
the tokens, so any edge with the key handles any message of any dialog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.topology import (
    EdgeAddress,
    Keyring,
    hide_request,
    hide_response,
    restore_request,
    restore_response,
)
from services.edge.topology.markers import MARKER_PARAM, Markers
from shared.routing_table.topology import TopologyOptions
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.uri import SipUri
from shared.sip.via import Via

log = logging.getLogger("callmesh.edge.topology")

_DEFAULTS: Final = TopologyOptions()
_TOKEN_MARK: Final = f";{_DEFAULTS.param}="
_MASKED: Final = _DEFAULTS.call_id_prefix
_WRAPPED: Final = _DEFAULTS.call_id_prefix + "~"
_UNMASK: Final = TopologyOptions(mask_call_id=True)


@dataclass(frozen=True, slots=True)
class DialogPlan:
    """A request of a hidden dialog: its options, and whether it came from the outside."""

    options: TopologyOptions
    marker: str
    from_outside: bool


class TopologyGate:
    __slots__ = ("_edges", "interfaces", "keyring", "markers")

    def __init__(self, keyring: Keyring, interfaces: Interfaces) -> None:
        self.keyring = keyring
        self.markers = Markers(keyring)
        self.interfaces = interfaces
        self._edges: dict[Interface, EdgeAddress] = {}

    def edge(self, interface: Interface) -> EdgeAddress:
        edge = self._edges.get(interface)
        if edge is None:
            edge = self._edges[interface] = EdgeAddress(
                interface.host, interface.port, interface.transport, owns=self.interfaces.is_ours
            )
        return edge

    # ----- from the outside -------------------------------------------------------------

    def restore_from_outside(self, response: Response) -> bool:
        """Restore a response to a hidden request; False: a bad token, drop the response."""
        vias = response.headers("via")
        if (not vias or _TOKEN_MARK not in vias[0]) and not response.call_id.startswith(_MASKED):
            return True
        try:
            restore_response(
                response,
                self.edge(self.interfaces.all[0]),
                self.keyring,
                _restoring(response.call_id),
            )
        except SipError as error:
            log.info("dropped %d with a bad topology token: %s", response.status, error.reason)
            return False
        return True

    def inbound(self, request: Request) -> DialogPlan | None:
        """Restore a request from the outside; the plan of a hidden dialog's request, if it is one.

        Raises `InvalidTokenError` (403/400) for a token in our URIs that does not open.
        """
        from_outside = _TOKEN_MARK in request.uri_text or any(
            _TOKEN_MARK in value for value in request.headers("route")
        )
        if from_outside:
            edge = self.edge(self.interfaces.all[0])
            restore_request(request, edge, self.keyring, _restoring(request.call_id))
        for route in request.routes:
            uri = route.uri
            if not isinstance(uri, SipUri) or not self.interfaces.is_ours(
                uri.host, uri.port, (uri.param("transport") or "udp").lower()
            ):
                break
            marker = uri.param(MARKER_PARAM)
            if marker:
                return DialogPlan(self.markers.open(marker), marker, from_outside)
        return None

    # ----- toward the outside -----------------------------------------------------------

    def outgoing(
        self,
        request: Request,
        plan: DialogPlan | None,
        options: TopologyOptions | None,
        outbound: Interface,
    ) -> None:
        """A branch about to leave (its Via, and Record-Route if any, added).

        `plan`: the dialog's (in-dialog requests); `options`: the hop's (a new dialog).
        """
        if plan is not None and plan.from_outside:
            top = request.top_via.with_params(**{MARKER_PARAM: plan.marker})
            request.replace_top_via(top)
            return
        if plan is None:
            if options is None:
                return
            self._mark_own_record_routes(request, self.markers.seal(options))
        else:
            options = plan.options
        hide_request(request, self.edge(outbound), self.keyring, options)

    def upstream(self, response: Response, popped: Via, outbound: Interface) -> None:
        """A response from the inside to a restored request: hide it on its way out."""
        marker = popped.param(MARKER_PARAM)
        if marker:
            hide_response(response, self.edge(outbound), self.keyring, self.markers.open(marker))

    def answer(self, response: Response, plan: DialogPlan, outbound: Interface) -> None:
        """A response the edge made itself from a restored request: hide what the restore put in.

        Made from the restored copy, it carries the inside's Call-ID (and any
        identity the restore brought back); hidden like a relayed response,
        the outside gets back what it sent.
        """
        hide_response(response, self.edge(outbound), self.keyring, plan.options)

    def _mark_own_record_routes(self, request: Request, marker: str) -> None:
        """Put the options on the edge's own Record-Route entries (the top ones)."""
        values = request.headers("record-route")
        addresses = request.record_routes
        marked = []
        for value, address in zip(values, addresses, strict=True):
            uri = address.uri
            if not isinstance(uri, SipUri) or not self.interfaces.is_ours(
                uri.host, uri.port, (uri.param("transport") or "udp").lower()
            ):
                break
            head, _, tail = value.rpartition(">")
            marked.append(f"{head};{MARKER_PARAM}={marker}>{tail}")
        if marked:
            request.set_header("Record-Route", ", ".join([*marked, *values[len(marked) :]]))


def _restoring(call_id: str) -> TopologyOptions:
    """Unmask a masked Call-ID; leave any other alone (the dialog's options are not known yet)."""
    return (
        _UNMASK if call_id.startswith(_MASKED) and not call_id.startswith(_WRAPPED) else _DEFAULTS
    )
