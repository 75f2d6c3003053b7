"""orjson's ``default`` for nested models: their fields, and nothing else taken."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel

from shared.contracts.model_json import nested_json


class Leg(BaseModel):
    call_id: str
    routes: tuple[str, ...]


def test_a_nested_model_is_written_as_its_fields() -> None:
    data = {"status": 200, "leg": Leg(call_id="c1", routes=("<sip:p1>",))}
    written = orjson.dumps(data, default=nested_json)
    assert orjson.loads(written) == {
        "status": 200,
        "leg": {"call_id": "c1", "routes": ["<sip:p1>"]},
    }


def test_anything_else_orjson_cannot_write_is_refused_by_its_type() -> None:
    with pytest.raises(TypeError, match=r"^set is not JSON$"):
        nested_json({"a"})
    with pytest.raises(orjson.JSONEncodeError, match=r"not JSON serializable: set"):
        orjson.dumps({"x": {"a"}}, default=nested_json)
