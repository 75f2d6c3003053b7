"""The base of every bus event payload, apart from the bus so a sans-IO core can build events.

The proxy core returns `Publish(event)` actions and the contracts define
events; neither needs the bus itself, only this base class.
"""

from __future__ import annotations

from typing import ClassVar

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
