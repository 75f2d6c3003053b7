"""Which peer a call comes from: the routing table's peers matched by source and tech prefix.

Why here and not in the edge: peers are routing-table records, changed through
the API and the command queue and carried to every edge by the table's events,
so the edge's index holds them beside the gateways and the dry run reads the
same copy. Matching is per new call, so the addresses are compiled into one
:class:`~shared.acl.AddressAcl` (longest prefix first, an entry with a port or
transport before one without), rebuilt only when a peer changes.
"""

from __future__ import annotations

from collections.abc import ItemsView
from dataclasses import dataclass

from shared.acl import AclEntry, AddressAcl
from shared.routing_table.model import Limits, Peer


@dataclass(frozen=True, slots=True)
class PeerMatch:
    """A peer as the edge applies it to a call; ``tech_prefix`` is ``""`` when it has none."""

    id: str
    trusted: bool
    group: str
    dialplan: str | None
    tech_prefix: str
    limits: Limits | None


class PeerIndex:
    """The enabled peers by source address (see the module docstring)."""

    __slots__ = ("_acl", "_at", "_peers")

    def __init__(self) -> None:
        self._peers: dict[str, Peer] = {}
        self._acl: AddressAcl | None = None
        self._at: dict[AclEntry, tuple[PeerMatch, ...]] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def items(self) -> ItemsView[str, Peer]:
        return self._peers.items()

    def put(self, peer_id: str, peer: Peer) -> None:
        self._peers[peer_id] = peer
        self._acl = None

    def remove(self, peer_id: str) -> None:
        if self._peers.pop(peer_id, None) is not None:
            self._acl = None

    def at(self, host: str, port: int, transport: str = "udp") -> tuple[PeerMatch, ...]:
        """The peers of the longest address covering the source, tech prefixes first."""
        acl = self._acl if self._acl is not None else self._compile()
        entry = acl.match(host, port, transport)
        return () if entry is None else self._at[entry]

    def classify(
        self, host: str, port: int, transport: str, number: str | None
    ) -> PeerMatch | None:
        """The peer a call from this source to ``number`` belongs to, or None.

        Among the peers of the source's longest address, the one whose tech
        prefix (longest first) starts ``number``, else one without a prefix
        (the smallest id when several share an address).
        """
        for match in self.at(host, port, transport):
            if not match.tech_prefix or (number and number.startswith(match.tech_prefix)):
                return match
        return None

    def trusts(self, host: str, port: int, transport: str = "udp") -> bool:
        """Whether the source needs no digest: some peer of its longest address is trusted.

        Trust is a property of the address (it is asked before any number is
        read, for in-dialog requests too): peers sharing an SBC share its trust.
        """
        return any(match.trusted for match in self.at(host, port, transport))

    def _compile(self) -> AddressAcl:
        found: dict[AclEntry, list[PeerMatch]] = {}
        for peer_id in sorted(self._peers):
            peer = self._peers[peer_id]
            if not peer.enabled:
                continue
            match = PeerMatch(
                peer_id,
                peer.trusted,
                peer.group,
                peer.dialplan,
                peer.tech_prefix or "",
                peer.limits,
            )
            for address in peer.addresses:
                found.setdefault(AclEntry.parse(address), []).append(match)
        self._at = {
            entry: tuple(sorted(matches, key=lambda match: -len(match.tech_prefix)))
            for entry, matches in found.items()
        }
        self._acl = AddressAcl(sorted(found, key=_specific_first))
        return self._acl


def _specific_first(entry: AclEntry) -> tuple[bool, bool]:
    return entry.port is None, entry.transport is None
