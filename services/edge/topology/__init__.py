"""Dialog-less topology hiding: inside addresses never reach the outside; no state is kept.

Usage by the edge (see `hiding` for where each call goes in the forwarding path):

    keyring = Keyring.parse(settings.topology_keys)      # CALLMESH_TOPOLOGY_KEYS
    edge = EdgeAddress(host, port, transport, owns=interfaces.is_ours)
    hide_request(request, edge, keyring, options)        # inside → outside
    restore_response(response, edge, keyring, options)   # outside → inside
    restore_request(request, edge, keyring, options)     # outside → inside, in-dialog
    hide_response(response, edge, keyring, options)      # inside → outside

A tampered, foreign or malformed token raises `InvalidTokenError` (a `SipError`
with status 403, or 400 when it is not even well-formed): answer a request
with it, drop a response.
"""

from services.edge.topology.hiding import (
    hide_request,
    hide_response,
    restore_request,
    restore_response,
)
from services.edge.topology.options import EdgeAddress, TopologySettings
from services.edge.topology.tokens import InvalidTokenError, Keyring, TopologyKey, new_secret

__all__ = [
    "EdgeAddress",
    "InvalidTokenError",
    "Keyring",
    "TopologyKey",
    "TopologySettings",
    "hide_request",
    "hide_response",
    "new_secret",
    "restore_request",
    "restore_response",
]
