"""Models built from trusted fields, without validation: what the edge pays per call event.

Compiled with the edge's hot path (`deploy.extensions.HOT`): the proxy core calls
it for every call event, and an interpreted call from compiled code costs more
than the construction itself.  The compiled build does the construction in C
(`_construct.c`); this module's `_construct` is the same in Python, for pure Python.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, TypeVar, cast

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set: Final = object.__setattr__


def unvalidated(cls: type[M], **fields: Any) -> M:
    """`cls.model_construct(**fields)` for a model of trusted fields, every field given.

    What `model_construct` does once there are no aliases, defaults or extras to look
    for, at a fraction of its cost: the edge builds every call event so (with
    `model_construct` the events took 8.5 % of the proxy core's instructions per call),
    and its publisher the batches of them.  The tests check each event so built against
    the same one validated, and the C construction against the Python one.
    """
    return cast(M, CONSTRUCT(cls, fields))


def _construct(cls: type[BaseModel], fields: dict[str, Any]) -> BaseModel:
    """The model of `cls` whose `__dict__` is `fields`: pydantic's four instance slots set
    as `model_construct` sets them, past `BaseModel.__setattr__`."""
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", set(fields))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _accelerator() -> ModuleType | None:
    """The C construction (`_construct.c`) if this process loaded the compiled build."""
    try:
        from shared.contracts import _construct as module
    except ImportError:
        return None
    return module


C_CONSTRUCT: Final = _accelerator()
CONSTRUCT: Final[Callable[[type[BaseModel], dict[str, Any]], BaseModel]] = (
    _construct if C_CONSTRUCT is None else C_CONSTRUCT.construct
)
"""The C construction in the compiled build, else `_construct`."""
