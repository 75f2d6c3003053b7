"""Generic `;name=value` header parameters."""

from __future__ import annotations

import pytest

from shared.sip.errors import SipParseError
from shared.sip.params import format_params, param_value, parse_params, with_param


def test_parse_and_format() -> None:
    params = parse_params(' ; Tag = 1 ;lr; name="quoted; value"', "test")
    assert params == (("tag", "1"), ("lr", None), ("name", '"quoted; value"'))
    assert param_value(params, "lr") == ""
    assert param_value(params, "missing") is None
    assert format_params(params) == ';tag=1;lr;name="quoted; value"'
    assert parse_params("", "test") == ()


def test_with_param_replaces_in_place_or_appends() -> None:
    params = (("a", "1"), ("b", None))
    assert with_param(params, "A", "2") == (("a", "2"), ("b", None))
    assert with_param(params, "c", None) == (("a", "1"), ("b", None), ("c", None))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x;a", "malformed thing (unexpected text before parameters)"),
        (";;", "malformed thing parameter"),
        # With whitespace or quotes the general path reads them: the same checks there.
        ("; ;lr", "malformed thing parameter"),
        ("; a b=1", "malformed thing parameter"),
        (";a=", "malformed thing parameter value"),
        (";a=b c", "malformed thing parameter value"),
        (';a="open', "unterminated quoted string in thing"),
    ],
)
def test_malformed(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_params(text, "thing")
    assert caught.value.reason == reason


def test_a_parameter_name_with_a_tab_inside_is_refused() -> None:
    with pytest.raises(SipParseError):
        parse_params(";a\tb=1", "Via")


def test_tabs_around_a_parameter_are_whitespace() -> None:
    assert parse_params(";a\t=\t1", "Via") == parse_params(";a=1", "Via")


def test_an_escaped_quote_right_before_the_closing_one_stays_in_the_value() -> None:
    assert parse_params(';p="a\\"";q=1', "thing") == (("p", '"a\\""'), ("q", "1"))
