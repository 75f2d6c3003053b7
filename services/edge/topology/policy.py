"""Topology hiding as a routing-table setting, and the marker that carries it through a dialog.

`TargetTopology` is what an operator attaches to a gateway or a rule (and,
once they exist, to a dispatcher set): the `TopologyOptions` plus `enabled`,
so a gateway can switch off hiding its rule asks for.  The token parameter
name and the Call-ID prefix are not per target: every edge must recognise
tokens and masked Call-IDs without knowing which target a message belongs
to, so they stay the process defaults.

The marker: an in-dialog request from the inside carries no hint of which
gateway it goes to, and the edge keeps no dialog state.  So the edge's own
Record-Route entries of a hidden dialog carry the options, sealed
(`;thx=<token>`): the inside's route set brings them back with every
in-dialog request, and the sealed route token of the outside brings them
back too.  The edge's Via on a request it restores toward the inside carries
the same marker, so the inside's responses are hidden statelessly as well.
"""

from __future__ import annotations

from functools import cached_property
from typing import Final, Self

from pydantic import model_validator

from services.edge.topology.options import TopologyOptions
from services.edge.topology.tokens import InvalidTokenError, Keyring

MARKER_PARAM: Final = "thx"
KIND_OPTIONS: Final = b"o"
_DEFAULTS: Final = TopologyOptions()
_MEMO_LIMIT: Final = 1024


class TargetTopology(TopologyOptions):
    """Topology hiding toward one gateway or rule: `{"mask_call_id": true}`, `{}` for defaults."""

    enabled: bool = True

    @model_validator(mode="after")
    def _process_wide(self) -> Self:
        if self.param != _DEFAULTS.param or self.call_id_prefix != _DEFAULTS.call_id_prefix:
            raise ValueError(
                "param and call_id_prefix are the same on every edge; they cannot be set per target"
            )
        return self

    @cached_property
    def options(self) -> TopologyOptions | None:
        """The options to apply, or None when this target switches hiding off (built once:
        every hidden branch asks, and the markers' memo then meets the same object)."""
        if not self.enabled:
            return None
        return TopologyOptions.model_validate(self.model_dump(exclude={"enabled"}))


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
