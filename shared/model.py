"""The base of every model that validates outside input: API bodies and queued commands.

Why one base: Python's JSON reader turns ``NaN``, ``Infinity`` and ``1e400``
into float NaN and infinity, which compare false with every bound, cannot be
written back as JSON and would poison a stored record. So numbers must be
finite in every such model and in every nested one, which a shared config
says once instead of a check per field. Fields beyond the known ones
(:class:`OpenInputModel`: operators' own metadata) are held to the same rule
by their type, because pydantic's JSON mode (FastAPI's bodies) lets any
number through a plain ``JsonValue``.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, JsonValue


def _finite(value: JsonValue) -> JsonValue:
    """``value`` if every number in it is finite; a loop, not recursion, for deep nesting."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


FiniteJsonValue = Annotated[JsonValue, AfterValidator(_finite)]


class InputModel(BaseModel):
    """Numbers are finite (NaN, infinities and overflowing literals are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


class OpenInputModel(InputModel):
    """An :class:`InputModel` that keeps unknown fields, as JSON values with finite numbers."""

    model_config = ConfigDict(extra="allow")

    __pydantic_extra__: dict[str, FiniteJsonValue]
