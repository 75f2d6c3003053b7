"""Which peer, routing group and dialplan a caller gets, chosen by its source and number.

Why by source: an ITSP's callers are its trunks, PBXs and SBCs, each known by
its address, and each dials in its own format (national, ``00``-international,
E.164) and pays its own price list. OpenSIPS gives drouting a per-caller group
and dialplan a per-caller plan. Here the routing table's peers
(``/v1/peers``, :mod:`shared.routing_table.peers`) decide first: the longest
matching address, then the tech prefix that starts the number (several
customers behind one SBC). ``CALLMESH_CALLER_PROFILES`` stays as a bootstrap
for sources no peer covers: ``;``-separated ``networks=group[/dialplan]``, the
networks in the ``CALLMESH_TRUSTED_NETWORKS`` form, the longest match winning.
A caller neither covers routes in group ``0`` with no dialplan.
"""

from __future__ import annotations

from services.edge.proxy.routes import DEFAULT_PROFILE, CallerProfile
from shared.acl import AclEntry, AddressAcl, parse_network_profiles
from shared.routing_table.cache import IndexRoutes
from shared.sip.transport.destination import Destination


class CallerProfiles:
    """The classifier `NumberRouter` asks per call (see the module docstring)."""

    def __init__(self, text: str, table: IndexRoutes | None = None) -> None:
        self._profiles: dict[AclEntry, CallerProfile] = {}
        for entries, group, dialplan in parse_network_profiles(text):
            profile = CallerProfile(group, dialplan)
            for entry in entries:
                self._profiles.setdefault(entry, profile)
        self._acl = AddressAcl(self._profiles)
        self._table = table

    def __call__(self, source: Destination, number: str) -> CallerProfile:
        if self._table is not None:
            peers = self._table.index.peers  # the index is swapped whole on a reload
            peer = peers.classify(source.host, source.port, source.transport, number)
            if peer is not None:
                return CallerProfile(peer.group, peer.dialplan, peer.id, peer.tech_prefix)
        entry = self._acl.match(source.host, source.port, source.transport)
        return DEFAULT_PROFILE if entry is None else self._profiles[entry]
