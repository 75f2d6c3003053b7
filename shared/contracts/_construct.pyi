"""A pydantic model built from trusted fields in C (`_construct.c`), only in the compiled build."""

from typing import Any

from pydantic import BaseModel

def construct(cls: type[BaseModel], fields: dict[str, Any], /) -> BaseModel:
    """The model of `cls` whose `__dict__` is `fields` (an exact dict), unvalidated."""
