"""Header manipulation: validation at write time, each action alone, then in combination."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.routing_table.manipulation import Rule, RuleEffect, RuleSet, apply, dry_run, preview
from shared.sip.message import Request, parse_message

INVITE = (
    b"INVITE sip:014075551234@198.51.100.7;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKa\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Front Desk" <sip:1000@example.com>;tag=abc\r\n'
    b"To: <sip:014075551234@198.51.100.7>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"X-Internal-Id: 42\r\n"
    b"X-Billing: acct=7\r\n"
    b"P-Asserted-Identity: <sip:+14075550000@example.com>\r\n"
    b"User-Agent: Asterisk PBX 18.1\r\n"
    b"Content-Length: 0\r\n\r\n"
)
RULE = TypeAdapter(Rule)


def invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


def rule_set(*rules: dict[str, Any], kind: str = "gateway", set_id: str = "s") -> RuleSet:
    return RuleSet.model_validate(
        {"id": set_id, "scope": {"kind": kind, "id": "1"}, "rules": list(rules)}
    )


def test_add_header_at_the_end_and_on_top() -> None:
    request = invite()
    apply([rule_set({"action": "add_header", "name": "X-Account", "value": "4711"})], request)
    assert request.header("x-account") == "4711"
    apply(
        [rule_set({"action": "add_header", "name": "X-Billing", "value": "first", "first": True})],
        request,
    )
    assert request.headers("x-billing") == ["first", "acct=7"]


def test_remove_header_by_name_and_by_pattern() -> None:
    request = invite()
    changes = apply([rule_set({"action": "remove_header", "name": "User-Agent"})], request)
    assert not request.has_header("user-agent")
    assert changes == [RuleEffect("s", 0, "remove_header", "User-Agent", "Asterisk PBX 18.1", None)]
    apply([rule_set({"action": "remove_header", "pattern": "^x-"})], request)
    assert not request.has_header("x-internal-id")
    assert not request.has_header("x-billing")
    assert request.has_header("p-asserted-identity")
    request.validate()


def test_replace_header_whole_and_by_regex_with_back_reference() -> None:
    request = invite()
    apply(
        [
            rule_set(
                {"action": "replace_header", "name": "User-Agent", "value": "Callmesh"},
                {
                    "action": "replace_header",
                    "name": "P-Asserted-Identity",
                    "pattern": r"sip:\+1(\d+)@example\.com",
                    "replacement": r"sip:+1\1@carrier.example",
                },
            )
        ],
        request,
    )
    assert request.header("user-agent") == "Callmesh"
    assert request.header("p-asserted-identity") == "<sip:+14075550000@carrier.example>"


def test_replace_of_an_absent_header_changes_nothing() -> None:
    request = invite()
    before = request.to_bytes()
    changes = apply(
        [rule_set({"action": "replace_header", "name": "Diversion", "value": "x"})], request
    )
    assert changes == []
    assert request.to_bytes() == before


@pytest.mark.parametrize(
    ("rule", "user"),
    [
        ({"strip": 1}, "14075551234"),
        ({"prefix": "+"}, "+014075551234"),
        ({"strip": 1, "prefix": "+"}, "+14075551234"),
        ({"pattern": r"^01(\d{3})(\d+)$", "replacement": r"+1\1-\2"}, "+1407-5551234"),
        ({"strip": 1, "pattern": r"^1", "replacement": "", "prefix": "00"}, "004075551234"),
    ],
)
def test_rewrite_request_uri_user(rule: dict[str, Any], user: str) -> None:
    request = invite()
    apply([rule_set({"action": "rewrite_ruri_user", **rule})], request)
    assert request.uri.user == user  # type: ignore[union-attr]
    assert request.uri.param("user") == "phone"  # type: ignore[union-attr]


def test_set_from_and_to_keeps_the_tags() -> None:
    request = invite()
    apply(
        [
            rule_set(
                {"action": "set_from", "display_name": "ACME Corp", "user": "+14075550000"},
                {"action": "set_to", "user": "4075551234"},
            )
        ],
        request,
    )
    assert request.from_.display_name == "ACME Corp"
    assert request.from_.uri.user == "+14075550000"  # type: ignore[union-attr]
    assert request.from_tag == "abc"
    assert request.to.uri.user == "4075551234"  # type: ignore[union-attr]
    request.validate()


def test_sets_apply_source_group_then_rule_then_gateway_whatever_the_given_order() -> None:
    gateway = rule_set({"action": "rewrite_ruri_user", "prefix": "9"}, kind="gateway", set_id="g")
    source = rule_set({"action": "rewrite_ruri_user", "strip": 1}, kind="source_group", set_id="sg")
    route = rule_set({"action": "rewrite_ruri_user", "prefix": "+"}, kind="rule", set_id="r")
    request = invite()
    changes = apply([gateway, route, source], request)
    assert [change.rule_set for change in changes] == ["sg", "r", "g"]
    assert request.uri.user == "9+14075551234"  # type: ignore[union-attr]


def test_rules_in_a_set_run_in_list_order_on_each_others_result() -> None:
    request = invite()
    apply(
        [
            rule_set(
                {"action": "add_header", "name": "X-Step", "value": "one"},
                {
                    "action": "replace_header",
                    "name": "X-Step",
                    "pattern": "one",
                    "replacement": "two",
                },
                {"action": "remove_header", "name": "X-Internal-Id"},
            )
        ],
        request,
    )
    assert request.headers("x-step") == ["two"]
    assert not request.has_header("x-internal-id")


def test_preview_reports_without_editing() -> None:
    request = invite()
    before = request.to_bytes()
    changes = preview([rule_set({"action": "rewrite_ruri_user", "strip": 1})], request)
    assert changes == [
        RuleEffect("s", 0, "rewrite_ruri_user", "Request-URI user", "014075551234", "14075551234")
    ]
    assert request.to_bytes() == before


def test_dry_run_for_the_route_api() -> None:
    result = dry_run(
        [
            rule_set({"action": "rewrite_ruri_user", "strip": 2, "prefix": "+1"}),
            rule_set({"action": "add_header", "name": "X-Carrier", "value": "a"}, kind="rule"),
        ],
        "0014075551234",
    )
    assert result.number == "+114075551234"
    assert [change.action for change in result.changes] == ["add_header", "rewrite_ruri_user"]


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"action": "add_header", "name": "Via", "value": "x"}, "protected"),
        ({"action": "add_header", "name": "v", "value": "x"}, "protected"),
        ({"action": "remove_header", "name": "Call-ID"}, "protected"),
        ({"action": "remove_header", "name": "CSeq"}, "protected"),
        ({"action": "replace_header", "name": "From", "value": "x"}, "protected"),
        ({"action": "replace_header", "name": "t", "value": "x"}, "protected"),
        ({"action": "remove_header", "name": "Content-Length"}, "protected"),
        ({"action": "add_header", "name": "Max-Forwards", "value": "1"}, "protected"),
        ({"action": "remove_header", "pattern": ".*"}, "matches protected"),
        ({"action": "remove_header", "pattern": "^c"}, "matches protected"),
        ({"action": "remove_header", "pattern": "("}, "invalid regex"),
        ({"action": "remove_header"}, "exactly one"),
        ({"action": "add_header", "name": "X-A", "value": "a\r\nVia: evil"}, "line breaks"),
        ({"action": "add_header", "name": "Bad Name", "value": "a"}, "not a valid header"),
        (
            {"action": "replace_header", "name": "X-A", "pattern": "a", "replacement": r"\2"},
            "invalid replacement",
        ),
        ({"action": "replace_header", "name": "X-A"}, "either value"),
        ({"action": "rewrite_ruri_user", "pattern": "[", "replacement": ""}, "invalid regex"),
        ({"action": "rewrite_ruri_user"}, "changes nothing"),
        ({"action": "rewrite_ruri_user", "prefix": "a b"}, "not allowed"),
        ({"action": "set_from"}, "display_name, user"),
        ({"action": "set_to", "user": "a@b"}, "not allowed"),
        ({"action": "frobnicate"}, "does not match any of the expected tags"),
    ],
)
def test_invalid_rules_are_refused_with_the_reason(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RULE.validate_python(rule)
    assert reason in str(raised.value)


def test_rule_set_json_round_trip_and_scope_validation() -> None:
    original = rule_set({"action": "remove_header", "pattern": "^x-"}, kind="dispatcher_set")
    again = RuleSet.model_validate_json(original.model_dump_json())
    request = invite()
    apply([again], request)
    assert not request.has_header("x-billing")
    with pytest.raises(ValidationError):
        rule_set({"action": "remove_header", "name": "X-A"}, kind="planet")
