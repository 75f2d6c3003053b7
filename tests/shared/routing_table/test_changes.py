"""Queued commands: hostile ones are refused with a short reason (the dead letter's header)."""

from __future__ import annotations

import re

import orjson
import pytest

from shared.routing_table.changes import InvalidChangeError, parse_commands

SECRET = "s3cret-" + "x" * 50


def _command(data: str) -> bytes:
    return f'{{"op": "upsert", "kind": "rule", "id": "1", "data": {data}}}'.encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_command('{"gateways": ["1"], "priority": NaN}'), "malformed JSON"),
        (_command('{"gateways": ["1"], "priority": Infinity}'), "malformed JSON"),
        (_command('{"gateways": ["1"], "priority": 1e400}'), "malformed JSON"),
        (_command('{"gateways": ["1"], "cost": -1e400}'), "malformed JSON"),
        (_command('{"gateways": ["1"], "priority": 1' + "0" * 40 + "}"), "data.priority:"),
        (_command('{"gateways": ["1"], "x": ' + "[" * 5000 + "]" * 5000 + "}"), "malformed JSON"),
        (_command('{"gateways": ["1"], "prefix": "' + SECRET * 10_000 + '"}'), "data.prefix:"),
        (b'{"op": "upsert", "kind": "rule", "id": "\xff"}', "malformed JSON"),
        (_command('"rule"'), "data: Input should be a valid dictionary"),
        (b"[]", "empty batch"),
        (b"7", "Input should be a valid dictionary"),
    ],
)
def test_hostile_commands_are_refused_with_a_short_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidChangeError) as caught:
        parse_commands(body)
    assert reason in str(caught.value)
    assert SECRET not in str(caught.value)
    assert len(str(caught.value)) < 2000


def test_many_bad_fields_make_a_bounded_reason() -> None:
    rules = [{"match": "(", "x": n} for n in range(1000)]
    body = orjson.dumps({"op": "upsert", "kind": "dialplan", "id": "d", "data": {"rules": rules}})
    with pytest.raises(InvalidChangeError) as caught:
        parse_commands(body)
    assert re.search(r"; and \d{3} more$", str(caught.value))
    assert len(str(caught.value)) < 3000
