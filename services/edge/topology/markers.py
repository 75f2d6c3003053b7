"""The marker that carries a target's topology options through a dialog.

An in-dialog request from the inside carries no hint of which
gateway it goes to, and the edge keeps no dialog state.  So the edge's own
Record-Route entries of a hidden dialog carry the options, sealed
(`;thx=<token>`): the inside's route set brings them back with every
in-dialog request, and the sealed route token of the outside brings them
back too.  The edge's Via on a request it restores toward the inside carries
the same marker, so the inside's responses are hidden statelessly as well.
"""

from __future__ import annotations

from typing import Final

from services.edge.topology.tokens import InvalidTokenError, Keyring
from shared.routing_table.topology import TopologyOptions

MARKER_PARAM: Final = "thx"
KIND_OPTIONS: Final = b"o"
_MEMO_LIMIT: Final = 1024


class Markers:
    """Seals options into markers and opens them again, both memoised (few distinct options)."""

    __slots__ = ("_by_marker", "_by_options", "keyring")

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._by_options: dict[TopologyOptions, str] = {}
        self._by_marker: dict[str, TopologyOptions] = {}

    def seal(self, options: TopologyOptions) -> str:
        marker = self._by_options.get(options)
        if marker is None:
            text = options.model_dump_json(exclude_defaults=True)
            marker = self.keyring.seal(KIND_OPTIONS, text.encode())
            if len(self._by_options) >= _MEMO_LIMIT:
                self._by_options.clear()
            self._by_options[options] = marker
        return marker

    def open(self, marker: str) -> TopologyOptions:
        """The options a marker carries; `InvalidTokenError` when it is not one of ours."""
        options = self._by_marker.get(marker)
        if options is None:
            text = self.keyring.open(KIND_OPTIONS, marker)
            try:
                options = TopologyOptions.model_validate_json(text)
            except ValueError:
                raise InvalidTokenError("topology marker carries no options", 400) from None
            if len(self._by_marker) >= _MEMO_LIMIT:
                self._by_marker.clear()
            self._by_marker[marker] = options
        return options
