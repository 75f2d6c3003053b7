"""Dispatcher sets as operators write them and as edges cache them.

A set is a named farm (e.g. the Asterisk boxes behind inbound DIDs): each
destination has a SIP URI, a ``weight`` (share of the traffic for the weighted
algorithms), a ``priority`` (higher first, for ``priority`` ordering) and free
``attributes`` the edge may pass on. ``algorithm`` is the set's default; an
edge rule may ask for another.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from shared.model import InputModel

Algorithm = Literal[
    "hash_call_id",
    "hash_from_user",
    "round_robin",
    "weighted_round_robin",
    "random",
    "priority",
    "least_calls",
]

Mode = Literal["proxy", "b2bua"]
"""How the edge carries a rule's, gateway's or set's new calls: relayed as a proxy (the
default), or answered and originated anew by its B2BUA, each side seeing only the edge
(`docs/b2bua.md`)."""

SET_ID_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
SetId = Annotated[str, StringConstraints(pattern=rf"^{SET_ID_PATTERN}$")]
DestinationUri = Annotated[
    str, StringConstraints(pattern=r"^sips?:[^\s@]+(@[^\s@]+)?$", max_length=256)
]


class SetMember(InputModel):
    """One destination of a dispatcher set, as the API takes it (not a SIP `Destination`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: DestinationUri
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    """0: used only when every weighted destination is unusable."""
    priority: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] = 0
    attributes: Annotated[str, StringConstraints(max_length=1024)] = ""


class DispatcherSet(InputModel):
    """The body of ``PUT /v1/dispatcher/sets/{set_id}``; destinations keep their given order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = "round_robin"
    destinations: Annotated[tuple[SetMember, ...], Field(min_length=1, max_length=256)]
    description: Annotated[str, StringConstraints(max_length=256)] = ""
    mode: Mode | None = None
    """Carry the calls whose first hop is one of its destinations as a proxy or a B2BUA
    (unset: proxied; `shared.routing_table.modes`)."""

    @model_serializer(mode="wrap")
    def _unset_mode_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A set without `mode` is written (Redis, the `health.…` events) as before the
        field existed: an edge of the previous version refuses fields it does not know."""
        data: dict[str, Any] = handler(self)
        if data.get("mode") is None:
            data.pop("mode", None)
        return data

    @model_validator(mode="after")
    def _unique_uris(self) -> DispatcherSet:
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.uri in seen:
                raise ValueError(f"destination {destination.uri} appears twice")
            seen.add(destination.uri)
        return self


def destination_target_id(set_id: str, uri: str) -> str:
    """The health target id of a set's destination: ``ds:{set_id}:{uri}``.

    Health is per (set, destination): the same box in two sets is probed once
    per set, which keeps each set's view independent of the others' lifetimes.
    """
    return f"ds:{set_id}:{uri}"
