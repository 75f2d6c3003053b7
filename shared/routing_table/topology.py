"""Topology hiding as a routing-table setting: the options, and the per-target switch.

`TargetTopology` is what an operator attaches to a gateway or a rule (and,
once they exist, to a dispatcher set): the `TopologyOptions` plus `enabled`,
so a gateway can switch off hiding its rule asks for.  The token parameter
name and the Call-ID prefix are not per target: every edge must recognise
tokens and masked Call-IDs without knowing which target a message belongs
to, so they stay the process defaults.
"""

from __future__ import annotations

from functools import cached_property
from typing import Final, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared.model import InputModel

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!*_+`'")


class TopologyOptions(InputModel):
    """How to hide toward one gateway, dispatcher set or rule (attach it there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mask_call_id: bool = False
    """Encrypt the Call-ID toward the hidden side (Asterisk writes its IP into it)."""
    keep_contact_user: bool = False
    """Keep the user part of the internal Contact (some carriers route on it)."""
    contact_uri_params: frozenset[str] = frozenset()
    """Contact URI parameters copied onto the edge's Contact (lower-case names)."""
    contact_params: frozenset[str] = frozenset()
    """Contact header parameters copied (e.g. `+sip.instance`, `expires`)."""
    rewrite_private_hosts: bool = True
    """Replace private IP hosts in From, To and P-Asserted-Identity by the edge's.

    RFC 3261 UAs match dialogs on tags, not on these URIs, so nothing has to
    be restored on the way back.
    """
    param: str = Field(default="th", min_length=1, max_length=16)
    """Name of the URI/Via parameter carrying the tokens."""
    call_id_prefix: str = Field(default="CMH-", min_length=1, max_length=16)
    """Marks a masked Call-ID so it is recognised on the way back."""

    @field_validator("contact_uri_params", "contact_params")
    @classmethod
    def _lower(cls, names: frozenset[str]) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in names)

    @field_validator("param", "call_id_prefix")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN_CHARS.issuperset(value):
            raise ValueError("must be a SIP token (letters, digits, -.!*_+`')")
        return value

    @field_validator("param")
    @classmethod
    def _lower_param(cls, value: str) -> str:
        return value.lower()  # URI parameter names compare case-insensitively


_DEFAULTS: Final = TopologyOptions()


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
