"""Which routing group and dialplan a caller gets, chosen by its source address.

Why by source: an ITSP's callers are its trunks, PBXs and SBCs, each known by
its address, and each dials in its own format (national, ``00``-international,
E.164) and pays its own price list. OpenSIPS gives drouting a per-caller group
and dialplan a per-caller plan; here ``CALLMESH_CALLER_PROFILES`` does both:
``;``-separated ``networks=group[/dialplan]``, the networks in the
``CALLMESH_TRUSTED_NETWORKS`` form. The longest matching network wins; a
caller no profile covers routes in group ``0`` with no dialplan.
"""

from __future__ import annotations

from services.edge.proxy.routes import DEFAULT_PROFILE, CallerProfile
from shared.acl import AclEntry, AddressAcl, parse_network_profiles
from shared.sip.transport.destination import Destination


class CallerProfiles:
    """The classifier `NumberRouter` asks per call (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self._profiles: dict[AclEntry, CallerProfile] = {}
        for entries, group, dialplan in parse_network_profiles(text):
            profile = CallerProfile(group, dialplan)
            for entry in entries:
                self._profiles.setdefault(entry, profile)
        self._acl = AddressAcl(self._profiles)

    def __call__(self, source: Destination) -> CallerProfile:
        entry = self._acl.match(source.host, source.port, source.transport)
        return DEFAULT_PROFILE if entry is None else self._profiles[entry]
