"""The base of every bus event payload, apart from the bus so a sans-IO core can build events.

The proxy core returns `Publish(event)` actions and the contracts define
events; neither needs the bus itself, only this base class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """Base of every typed event payload.

    Subclasses set ``routing_key`` (it must start with the emitting service's
    name, e.g. ``routing.rule.changed``) and bump ``schema_version`` on any
    incompatible change of their fields.
    """

    model_config = ConfigDict(frozen=True)

    routing_key: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def json_data(self) -> dict[str, Any]:
        """The fields as an envelope carries them: JSON types, or models whose fields are.

        `shared.bus.base.Envelope.to_bytes` writes a model met inside as its fields, and an
        ``orjson.Fragment`` as its bytes, so an event that holds its parts written already
        (`shared.contracts.calls.WrittenCallEventBatch`) returns them as they are, where this
        default pays pydantic's serialiser for a copy.
        """
        return self.model_dump(mode="json")
