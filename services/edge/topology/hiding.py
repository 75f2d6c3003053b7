"""Hide the inside's topology from the outside, and restore it on the way back, without state.

"Inside" is the side being hidden (Asterisk boxes, internal proxies);
"outside" is the side it is hidden from (a carrier).  Four entry points,
one per message direction, each editing the message in place and returning it:

| message | from | call | where in the edge's forwarding |
| --- | --- | --- | --- |
| request  | inside  | `hide_request`     | after popping its Routes, adding its Via and RR |
| response | outside | `restore_response` | before popping its Via |
| request  | outside | `restore_request`  | before Route processing |
| response | inside  | `hide_response`    | after popping its Via |

What travels in sealed tokens (see `tokens`), each under parameter `th`:
- the inside Vias, in the edge's own Via of a request going out: the
  response brings them back (also every retransmission, so no transaction
  memory is needed for them);
- the inside Record-Route set, in the single Record-Route the outside sees
  (`<sip:edge;lr;th=…>`): it stays in the outside's route set for the whole
  dialog, so every in-dialog request from the outside brings it back;
- the inside Contact, in the edge's Contact URI (`sip:edge;th=…`): the
  outside's in-dialog requests are addressed to it.

The route set and the Contact are sealed separately on purpose: a target
refresh (re-INVITE, UPDATE) changes the Contact only, so hiding a request or
response from the inside never needs the route set, which the edge has
popped by then.  Any edge holding the key decodes any token: an edge
restart, or the BYE entering at another edge, still works.

Call-ID masking (`mask_call_id`) is an involution over the edge: a Call-ID
crossing outward is sealed (`CMH-<token>`) unless it is an outside one that
crossed inward before, which crossed as `CMH-~<original>` and is unwrapped.
So both dialogs created inside and dialogs created outside keep one stable
Call-ID on each side, statelessly.  Limitation: masks are sealed with the
current key, so rotating the current key changes the mask of inside-created
dialogs in progress (their later inside-to-outside requests then carry a
Call-ID the outside does not know); rotate when few calls are up, or keep
masking off.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from services.edge.topology.options import EdgeAddress
from services.edge.topology.tokens import Keyring
from shared.routing_table.topology import TopologyOptions
from shared.sip.address import Address, parse_address_list
from shared.sip.headers import canonical_name
from shared.sip.message import Message, Request, Response
from shared.sip.params import format_params
from shared.sip.uri import SipUri, Uri

KIND_VIA: Final = b"v"
KIND_ROUTES: Final = b"r"
KIND_CONTACT: Final = b"c"
KIND_CALL_ID: Final = b"i"

_OUTSIDE_IS_UAS: Final = "s"
"""Route token written on a request: the outside's requests list the routes in RR order."""
_OUTSIDE_IS_UAC: Final = "c"
"""Route token written on a response: the outside's requests list them reversed."""
_IDENTITY_HEADERS: Final = (
    "from",
    "to",
    "p-asserted-identity",
    "p-preferred-identity",
    "remote-party-id",
)
DEFAULT_OPTIONS: Final = TopologyOptions()


def hide_request(
    request: Request,
    edge: EdgeAddress,
    keyring: Keyring,
    options: TopologyOptions = DEFAULT_OPTIONS,
) -> Request:
    """A request from the inside as it must leave: only the edge's Via, no inside route or Contact.

    Precondition: the topmost Via is the edge's own (the edge prepended it)
    and the edge's own Route entries are popped; remaining Route entries lead
    to the outside and are kept.
    """
    vias = request.headers("via")
    if len(vias) > 1:
        top = request.top_via
        if request.method != "ACK":  # an ACK gets no response to restore
            token = keyring.seal(KIND_VIA, "\n".join(vias[1:]).encode())
            top = top.with_params(**{options.param: token})
        _set_vias(request, [str(top)])
    if request.has_header("record-route"):
        if request.to_tag is None:
            routes = request.headers("record-route")
            token = keyring.seal(KIND_ROUTES, (_OUTSIDE_IS_UAS + "\n".join(routes)).encode())
            request.set_header("Record-Route", _edge_route(edge, options, token))
        else:  # a Record-Route inside a dialog changes no route set; it would only leak
            request.remove_header("record-route")
    _hide_common(request, edge, keyring, options)
    return request


def hide_response(
    response: Response,
    edge: EdgeAddress,
    keyring: Keyring,
    options: TopologyOptions = DEFAULT_OPTIONS,
) -> Response:
    """A response from the inside to an outside request, as it must leave.

    The Record-Route entries down to the lowest one naming the edge (the
    inside's and the edge's) collapse into one sealed entry; the outside's
    own entries below stay.  Without any entry of the edge all are sealed,
    which hides everything but loses the outside proxies from the route set:
    the edge must Record-Route dialog-creating requests it sends inside.
    """
    if response.has_header("record-route"):
        routes = response.headers("record-route")
        boundary = len(routes) - 1
        for index, address in enumerate(response.record_routes):
            if isinstance(address.uri, SipUri) and edge.owns(address.uri):
                boundary = index
        hidden = "\n".join(routes[: boundary + 1])
        token = keyring.seal(KIND_ROUTES, (_OUTSIDE_IS_UAC + hidden).encode())
        entries = [_edge_route(edge, options, token), *routes[boundary + 1 :]]
        response.set_header("Record-Route", ", ".join(entries))
    _hide_common(response, edge, keyring, options)
    return response


def restore_request(
    request: Request,
    edge: EdgeAddress,
    keyring: Keyring,
    options: TopologyOptions = DEFAULT_OPTIONS,
) -> Request:
    """A request from the outside, addressed to a hidden Contact, turned back into the inside's.

    The Request-URI becomes the inside Contact and the sealed Route entry
    the inside route set (the edge's own entries at its top are then popped
    by the edge's normal loose routing).  Raises `InvalidTokenError` (403/400)
    for a tampered or foreign token in a URI naming the edge.
    """
    if options.mask_call_id:
        _call_id_inward(request, keyring, options)
    marker = f";{options.param}="
    if marker in request.uri_text:
        uri = request.uri
        if isinstance(uri, SipUri) and edge.owns(uri):
            token = uri.param(options.param)
            if token:
                request.set_uri(keyring.open(KIND_CONTACT, token).decode())
    _restore_route_set(request, "Route", edge, keyring, options)
    return request


def restore_response(
    response: Response,
    edge: EdgeAddress,
    keyring: Keyring,
    options: TopologyOptions = DEFAULT_OPTIONS,
) -> Response:
    """A response from the outside to a hidden request: the inside Vias (and route set) back.

    The edge's Via stays on top, as the transaction layer expects; the
    inside Vias go right below it.  Raises `InvalidTokenError` for a bad token
    (the edge drops such a response).
    """
    if options.mask_call_id:
        _call_id_inward(response, keyring, options)
    marker = f";{options.param}="
    vias = response.headers("via")
    if vias and marker in vias[0]:
        token = response.top_via.param(options.param)
        if token:
            inside = keyring.open(KIND_VIA, token).decode().split("\n")
            _set_vias(response, [vias[0], *inside, *vias[1:]])
    _restore_route_set(response, "Record-Route", edge, keyring, options)
    return response


# ----- helpers ----------------------------------------------------------------------------


def _hide_common(
    message: Message, edge: EdgeAddress, keyring: Keyring, options: TopologyOptions
) -> None:
    if message.has_header("contact") and not message.contact_is_wildcard:
        contacts = [_edge_contact(c, edge, keyring, options) for c in message.contacts]
        message.set_header("Contact", ", ".join(contacts))
    if options.mask_call_id:
        _call_id_outward(message, keyring, options)
    if options.rewrite_private_hosts:
        for name in _IDENTITY_HEADERS:
            if message.has_header(name):
                _rewrite_private_hosts(message, name, edge)


def _edge_route(edge: EdgeAddress, options: TopologyOptions, token: str) -> str:
    return f"<sip:{edge.host_port}{edge.transport_suffix};lr;{options.param}={token}>"


def _edge_contact(
    contact: Address, edge: EdgeAddress, keyring: Keyring, options: TopologyOptions
) -> str:
    uri = contact.uri
    token = keyring.seal(KIND_CONTACT, str(uri).encode())
    user = None
    kept: tuple[tuple[str, str | None], ...] = ()
    if isinstance(uri, SipUri):
        if options.keep_contact_user:
            user = uri.user
        wanted = options.contact_uri_params
        if wanted:
            kept = tuple(p for p in uri.params if p[0] in wanted and p[0] != "transport")
    header_params = ""
    if options.contact_params:
        header_params = format_params(
            tuple(p for p in contact.params if p[0] in options.contact_params)
        )
    if user is None and not kept:  # the usual case: nothing to escape
        return (
            f"<sip:{edge.host_port};{options.param}={token}{edge.transport_suffix}>{header_params}"
        )
    params = ((options.param, token), *edge.transport_param, *kept)
    return f"<{SipUri(edge.host, user, None, edge.port, params)}>{header_params}"


def _unsealed_routes(
    values: list[str],
    addresses: list[Address],
    edge: EdgeAddress,
    keyring: Keyring,
    options: TopologyOptions,
    *,
    for_request: bool,
) -> list[str]:
    entries: list[str] = []
    for value, address in zip(values, addresses, strict=True):
        uri = address.uri
        token = uri.param(options.param) if isinstance(uri, SipUri) and edge.owns(uri) else None
        if not token:
            entries.append(value)
            continue
        text = keyring.open(KIND_ROUTES, token).decode()
        sealed = text[1:].split("\n")
        if for_request and text[0] == _OUTSIDE_IS_UAC:
            sealed.reverse()
        entries.extend(sealed)
    return entries


def _set_vias(message: Message, vias: list[str]) -> None:
    """One Via field per hop, in order, at the place of the first Via."""
    message.remove_header("via")
    for via in reversed(vias):
        message.prepend_via(via)


def _restore_route_set(
    message: Message, name: str, edge: EdgeAddress, keyring: Keyring, options: TopologyOptions
) -> None:
    """Unseal our token in a request's Route or a response's Record-Route set, if there."""
    values = message.headers(name)
    if not any(f";{options.param}=" in value for value in values):
        return
    for_request = isinstance(message, Request)
    parsed = message.routes if for_request else message.record_routes
    entries = _unsealed_routes(values, parsed, edge, keyring, options, for_request=for_request)
    _set_list(message, name, entries)


def _set_list(message: Message, name: str, values: list[str]) -> None:
    if values:
        message.set_header(name, ", ".join(values))
    else:
        message.remove_header(name)


def _call_id_outward(message: Message, keyring: Keyring, options: TopologyOptions) -> None:
    call_id = message.call_id
    wrapped = options.call_id_prefix + "~"
    if call_id.startswith(wrapped):
        message.set_header("Call-ID", call_id[len(wrapped) :])
    else:
        token = keyring.seal(KIND_CALL_ID, call_id.encode())
        message.set_header("Call-ID", options.call_id_prefix + token)


def _call_id_inward(message: Message, keyring: Keyring, options: TopologyOptions) -> None:
    call_id = message.call_id
    prefix = options.call_id_prefix
    if call_id.startswith(prefix) and call_id[len(prefix) : len(prefix) + 1] != "~":
        message.set_header("Call-ID", keyring.open(KIND_CALL_ID, call_id[len(prefix) :]).decode())
    else:
        message.set_header("Call-ID", f"{prefix}~{call_id}")


def _rewrite_private_hosts(message: Message, name: str, edge: EdgeAddress) -> None:
    if name == "from":
        addresses = [message.from_]
    elif name == "to":
        addresses = [message.to]
    else:
        addresses = [a for value in message.headers(name) for a in parse_address_list(value)]
    if not any(_is_private(address.uri) for address in addresses):
        return
    rewritten = [
        Address(_on_edge(a.uri, edge), a.display_name, a.params) if _is_private(a.uri) else a
        for a in addresses
    ]
    message.set_header(canonical_name(name), ", ".join(map(str, rewritten)))


def _on_edge(uri: Uri, edge: EdgeAddress) -> Uri:
    if not isinstance(uri, SipUri):
        return uri
    return SipUri(edge.host, uri.user, uri.password, None, uri.params, uri.headers, uri.scheme)


_PRIVATE_MEMO: dict[str, bool] = {}
_PRIVATE_MEMO_LIMIT: Final = 1024


def _is_private(uri: Uri) -> bool:
    """True for a SIP URI whose host is a private, loopback or link-local IP literal."""
    if not isinstance(uri, SipUri):
        return False
    host = uri.host
    if not (host[:1].isdigit() or host[:1] == "["):
        return False
    private = _PRIVATE_MEMO.get(host)
    if private is None:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            private = False
        else:
            private = ip.is_private or ip.is_loopback or ip.is_link_local
        if len(_PRIVATE_MEMO) >= _PRIVATE_MEMO_LIMIT:
            _PRIVATE_MEMO.clear()
        _PRIVATE_MEMO[host] = private
    return private
