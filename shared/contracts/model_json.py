"""orjson's ``default`` for models met inside a ``__dict__`` being written.

Its own module, apart from `event.py` (which defines a pydantic model, and so is not
compiled), so that it is compiled with the edge's hot path (`deploy.extensions.HOT`):
orjson calls it for each leg of every answered call's event, and an interpreted function
cost a Python frame each time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def nested_json(value: object) -> dict[str, Any]:
    """orjson's ``default`` for a model's ``__dict__``: a nested model (a call event's
    `DialogLeg`) as its fields.  Why: the edge's call events as JSON, its envelopes and the
    accounting service's stored data write a ``__dict__`` without a copy, and all but these
    few fields are plain JSON already."""
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON")
