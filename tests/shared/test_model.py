"""Outside input has finite numbers only, in known fields, nested models and kept extras."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.registrar.api.subscribers import SubscriberBody
from shared.dispatcher import DispatcherSet
from shared.health.policy import PolicyOverride
from shared.routing_table.model import Carrier, Gateway, Rule

HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
"""JSON (or what Python's reader accepts as JSON) that reads as a non-finite float."""


def _read(body: str) -> Any:
    return json.loads(body)  # Python's reader accepts all of the above


@pytest.mark.parametrize("mode", ["python", "json"])  # FastAPI validates bodies in JSON mode
@pytest.mark.parametrize("number", HOSTILE_NUMBERS)
@pytest.mark.parametrize(
    ("model", "template"),
    [
        (Rule, '{"gateways": ["1"], "priority": %s}'),
        (Rule, '{"gateways": ["1"], "tag": %s}'),
        (Rule, '{"gateways": ["1"], "meta": {"cost": [1, %s]}}'),
        (Gateway, '{"address": "sip:gw.example", "weight": %s}'),
        (Carrier, '{"gateways": [{"id": "1", "weight": %s}]}'),
        (SubscriberBody, '{"password": "p", "quota": %s}'),
        (PolicyOverride, '{"interval": %s}'),
        (DispatcherSet, '{"destinations": [{"uri": "sip:a.example", "weight": %s}]}'),
    ],
)
def test_non_finite_numbers_are_refused(model: Any, template: str, number: str, mode: str) -> None:
    with pytest.raises(ValidationError) as caught:
        if mode == "python":
            model.model_validate(_read(template % number))
        else:
            model.model_validate_json(template % number)
    error = caught.value.errors()[0]
    assert (error["type"], error["msg"]) in (
        ("finite_number", "Input should be a finite number"),
        ("value_error", "Value error, numbers must be finite"),
    )


def test_finite_extras_are_kept_as_written() -> None:
    rule = Rule.model_validate(_read('{"gateways": ["1"], "meta": {"cost": [1, 2.5, null]}}'))
    assert rule.model_extra == {"meta": {"cost": [1, 2.5, None]}}
    assert json.loads(rule.stored()) == {"gateways": ["1"], "meta": {"cost": [1, 2.5, None]}}


def test_finite_floats_still_pass() -> None:
    assert PolicyOverride.model_validate({"interval": 2.5}).interval == 2.5
