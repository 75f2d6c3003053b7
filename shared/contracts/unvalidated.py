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
    _set(model, "__pydantic_fields_set__", _fields_set(cls, fields))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_FIELDS_SETS: Final[dict[type, set[str]]] = {}
"""Each class's declared fields as a set, shared by the models `_construct` builds of it."""


def _fields_set(cls: type, fields: dict[str, Any]) -> set[str]:
    """The fields set of a model of `cls` built from `fields`: one per class, shared.

    Why: a new set of the keys per model cost some 13,000 instructions a proxied call
    (building, freeing, and the collector walking the sets of the events that wait for their
    batch; `docs/benchmarks.md`).  Safe to share: the models built so are frozen (nothing
    adds to the set), and pydantic copies a model's set before changing it (``model_copy``).
    A model given fewer or more fields than its class declares, or of a class that is no
    pydantic model, gets its own.  Only the number of fields is compared: `fields` holding
    every field is what `unvalidated` asks of its callers.
    """
    shared = _FIELDS_SETS.get(cls)
    if shared is None:
        declared = getattr(cls, "__pydantic_fields__", None)
        if not isinstance(declared, dict):
            return set(fields)
        shared = _FIELDS_SETS[cls] = set(declared)
    return shared if len(shared) == len(fields) else set(fields)


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
