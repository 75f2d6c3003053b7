"""422 bodies quote at most a short, secret-free excerpt, and bad input never makes a 500."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient, Response

from services.registrar.api.subscribers import SubscriberBody
from shared.api import create_app
from shared.api.errors import EXCERPT_CHARS, MAX_ERRORS, MAX_LOC_PARTS, validation_details
from shared.routing_table.model import Rule

PASSWORD = "correct-horse-battery-staple-" + "p" * 300


def _client() -> AsyncClient:
    router = APIRouter()

    @router.put("/rules/{rule_id}")
    async def put_rule(rule_id: str, body: Rule) -> dict[str, object]:
        return {"id": rule_id, **body.model_dump(mode="json")}

    @router.put("/subscribers/{user}")
    async def put_subscriber(user: str, body: SubscriberBody) -> dict[str, object]:
        return {"id": user}

    app = create_app("test", [router], [], None)
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


async def _put(client: AsyncClient, body: str | bytes) -> Response:
    """A PUT of a rule with ``body`` sent as is (the JSON encoder would refuse NaN)."""
    return await client.put(
        "/v1/rules/1", content=body, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_get_a_422(number: str) -> None:
    async with _client() as client:
        known = await _put(client, f'{{"gateways": ["1"], "priority": {number}}}')
        extra = await _put(client, f'{{"gateways": ["1"], "cost": {number}}}')
    assert known.status_code == extra.status_code == 422
    assert known.json()["detail"][0]["loc"] == ["body", "priority"]
    assert known.json()["detail"][0]["type"] == "finite_number"
    assert known.json()["detail"][0]["input"] in ("nan", "inf", "-inf")
    assert extra.json()["detail"][0]["loc"][:2] == ["body", "cost"]


async def test_a_long_password_is_refused_without_being_sent_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "callmesh.api")
    async with _client() as client:
        too_long = await client.put("/v1/subscribers/a", json={"password": PASSWORD})
        missing = await client.put("/v1/rules/1", json={"password": PASSWORD, "prefix": "x" * 9})
    assert too_long.status_code == missing.status_code == 422
    for response in (too_long, missing):
        assert "correct-horse" not in response.text
    assert too_long.json()["detail"] == [
        {
            "loc": ["body", "password"],
            "msg": "String should have at most 256 characters",
            "type": "string_too_long",
        }
    ]
    # a missing field's "input" is the whole body: never quoted
    assert {"loc": ["body", "gateways"], "msg": "Field required", "type": "missing"} in (
        missing.json()["detail"]
    )
    refusals = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert len(refusals) == 2  # one line per refused request
    assert all("correct-horse" not in json.dumps(r.__dict__, default=str) for r in refusals)


async def test_long_inputs_are_quoted_as_a_short_excerpt() -> None:
    async with _client() as client:
        response = await client.put("/v1/rules/1", json={"gateways": ["1"], "prefix": "9" * 10**6})
    (detail,) = response.json()["detail"]
    assert detail["input"] == "9" * EXCERPT_CHARS + "… (1000000 characters)"
    assert len(response.content) < 500


async def test_the_service_still_answers_after_hostile_bodies() -> None:
    hostile = [
        "[" * 100_000 + "]" * 100_000,
        '{"gateways": ["1"], "x": ' + "[" * 900 + "]" * 900 + "}",
        '{"gateways": ["1"], "priority": 1' + "0" * 5000 + "}",
        '{"gateways": ["\xff\xfe"]}',
        '{"gateways": ' + json.dumps(["1"] * 50_000) + "}",
    ]
    async with _client() as client:
        statuses = [(await _put(client, body)).status_code for body in hostile]
        invalid_utf8 = await _put(client, b'{"gateways": ["\xff"]}')
        after = await client.put("/v1/rules/1", json={"gateways": ["1"]})
    assert all(400 <= status < 500 for status in statuses), statuses
    assert 400 <= invalid_utf8.status_code < 500
    assert after.status_code == 200


def test_details_are_bounded() -> None:
    errors = [
        {"loc": ("body", *range(50)), "msg": "m" * 10_000, "type": "t", "input": 10**40}
        for _ in range(MAX_ERRORS + 5)
    ]
    details = validation_details(errors)
    assert len(details) == MAX_ERRORS + 1
    assert details[-1]["msg"] == "and 5 more"
    assert details[0]["loc"] == ["body", *range(MAX_LOC_PARTS - 1), "…"]
    assert len(details[0]["msg"]) < 300
    assert details[0]["input"].startswith("1" + "0" * 31 + "…")


@pytest.mark.parametrize(
    "field", ["password", "api_token", "ha1", "shared_secret", "privateKey", "Authorization"]
)
def test_secret_fields_are_never_quoted(field: str) -> None:
    error = {"loc": ("body", field), "msg": "Value error, bad s3cret", "type": "value_error"}
    (detail,) = validation_details([{**error, "input": "s3cret"}])
    assert "s3cret" not in json.dumps(detail)
